import AsyncTestSupport
import Foundation
import NIOCore
import Testing
import WebSocketCore
import WebSockets

/// wss:// interop with the peers of `Tests/Peers`, certificates from `TestCertificates`:
/// Node `ws` and Python `websockets` clients → our server (trusting the test CA with
/// `--ca`), our client → a Python `websockets` wss server (`--tls-cert`/`--tls-key`);
/// with and without permessage-deflate.
@Suite(.enabled(if: TestCertificates.available, "needs the openssl CLI (scripts/setup.sh)"))
struct TLSInteropTests {
    @Test(.enabled(if: Peer.node.shouldRun, "needs node + ws (scripts/setup.sh)"), arguments: [false, true])
    func nodeClientToOurTLSServer(deflate: Bool) async throws {
        try await peerClient(.node, deflate: deflate)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"), arguments: [false, true])
    func pythonClientToOurTLSServer(deflate: Bool) async throws {
        try await peerClient(.python, deflate: deflate)
    }

    @Test(.enabled(if: Peer.python.shouldRun, "needs python3 + websockets (scripts/setup.sh)"), arguments: [false, true])
    func ourClientToPythonTLSServer(deflate: Bool) async throws {
        let peer = Peer.python
        try peer.requireAvailable("our client → its wss server, deflate \(deflate ? "on" : "off")")
        let arguments = ["--tls-cert", TestCertificates.pem("server"), "--tls-key", TestCertificates.key("server")]
            + (deflate ? ["--deflate"] : [])
        try await peer.withServer(arguments) { port in
            let ws = try await WebSocket.connect(to: "wss://localhost:\(port)/tls", options: trustingTestCA(deflate: deflate))
            defer { ws.terminate() }
            #expect(ws.handshake.extensions.isEmpty == !deflate)
            var iterator = ws.messages.makeAsyncIterator()
            try await ws.send(text: "hello wss")
            #expect(try await iterator.next() == .text("hello wss"))
            let block = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try await ws.send(binary: ByteBuffer(bytes: block))
            #expect(try await iterator.next() == .binary(ByteBuffer(bytes: block)))
            try await ws.send(text: "close:4001:bye")
            do {
                while try await iterator.next() != nil {}
            } catch let info as CloseInfo {
                Issue.record("unclean close: \(info)")
            }
        }
    }

    private func peerClient(_ peer: Peer, deflate: Bool) async throws {
        try peer.requireAvailable("its client → our wss server, deflate \(deflate ? "on" : "off")")
        try await withTLSEchoServer({ if deflate { $0.perMessageDeflate = PerMessageDeflateOptions() } }) { _, port in
            let arguments = ["--ca", TestCertificates.pem("ca")] + (deflate ? ["--deflate"] : [])
            let result = try await peer.runClient(url: "wss://127.0.0.1:\(port)/interop", arguments)
            #expect(result.ok, "\(peer) client failed: \(result.error ?? "?") after \(result.steps) steps")
            #expect(result.steps == 14)
            #expect(result.extensions == (deflate ? "permessage-deflate" : nil))
            #expect(result.closeCode == 1000)
        }
    }
}
