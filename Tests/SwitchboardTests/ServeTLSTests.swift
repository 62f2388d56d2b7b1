import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// `switchboard serve --tls-cert/--tls-key` as a process: wss:// on the broker's port, the
/// start-up lines, and a new certificate taken on SIGHUP.
@Suite(.enabled(if: TestCertificates.available, "needs the openssl CLI"))
struct ServeTLSTests {
    func connect(port: Int, token: String, trusting ca: String) async throws -> WebSocket {
        var options = ClientOptions()
        options.tls = TLSConfiguration(caFile: TestCertificates.pem(ca))
        options.headers.add(name: "Authorization", value: "Bearer \(token)")
        options.protocols = ["switchboard.v1"]
        return try await WebSocket.connect(to: "wss://127.0.0.1:\(port)/", options: options, group: testGroup)
    }

    @Test func servesWSSAndReloadsTheCertificateOnSIGHUP() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let certificate = directory.appendingPathComponent("cert.pem")
        let key = directory.appendingPathComponent("key.pem")
        func install(_ name: String) throws {
            for (from, to) in [(TestCertificates.pem(name), certificate), (TestCertificates.key(name), key)] {
                try? FileManager.default.removeItem(at: to)
                try FileManager.default.copyItem(atPath: from, toPath: to.path)
            }
        }
        try install("server")
        let serve = try SwitchboardProcess.start(
            ["serve", "--port", "0", "--host", "127.0.0.1", "--tls-cert", certificate.path, "--tls-key", key.path],
            in: directory)
        defer { serve.kill() }
        let port = try await serve.listeningPort()
        let lines = try await serve.stdout.wait(for: "the start-up lines") { text in
            text.contains("admin token is in") ? text : nil
        }
        #expect(lines.contains("wss://127.0.0.1:\(port)/") && lines.contains("https://127.0.0.1:\(port)/"), "\(lines)")
        #expect(lines.contains("switchboard: database switchboard.db") && lines.contains("replay log off"), "\(lines)")
        let token = try String(contentsOf: directory.appendingPathComponent("switchboard.db.admin-token"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)

        let first = try await connect(port: port, token: token, trusting: "ca")
        try await first.send(text: #"{"op":"sub","topic":"a","id":"1"}"#)

        try install("server2")
        kill(serve.process.processIdentifier, SIGHUP)
        _ = try await serve.stderr.wait(for: "the reload") { $0.contains("TLS certificate reloaded") ? true : nil }
        let second = try await connect(port: port, token: token, trusting: "otherca")
        try await second.close()
        await #expect(throws: (any Error).self) { try await connect(port: port, token: token, trusting: "ca") }
        try await first.close()

        serve.terminate()
        #expect(try await serve.exitStatus() == 0)
    }

    @Test func aCertificateWithoutAKeyExits64() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let serve = try SwitchboardProcess.start(
            ["serve", "--port", "0", "--host", "127.0.0.1", "--tls-cert", TestCertificates.pem("server")], in: directory)
        defer { serve.kill() }
        #expect(try await serve.exitStatus() == 64)
        #expect(serve.stderr.text.contains("tls_key"), "\(serve.stderr.text)")
    }

    @Test func anUnreadableCertificateExits66BeforeCreatingTheStore() async throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("missing.pem").path
        let serve = try SwitchboardProcess.start(
            ["serve", "--port", "0", "--host", "127.0.0.1", "--tls-cert", missing, "--tls-key", TestCertificates.key("server")],
            in: directory)
        defer { serve.kill() }
        #expect(try await serve.exitStatus() == 66)
        #expect(serve.stderr.text.contains("cannot read the TLS file \(missing)"), "\(serve.stderr.text)")
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("switchboard.db").path))
    }
}
