import Foundation
import Testing
import WebSocketCore
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// The browser files the broker serves from the copy of web/ in its binary.
@Suite struct WebAssetsTests {
    static let webDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("web")

    @Test func embeddedCopyMatchesTheWebDirectory() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.webDirectory.path).sorted()
        #expect(files.contains("switchboard.js") && files.contains("switchboard.d.ts"))
        #expect(files == EmbeddedWeb.files.map(\.name), "run scripts/embed-web.sh")
        for (name, embedded) in EmbeddedWeb.files {
            var text = try String(contentsOf: Self.webDirectory.appendingPathComponent(name), encoding: .utf8)
            if text.hasSuffix("\n") { text.removeLast() }
            #expect(embedded == text, "\(name) differs from its embedded copy: run scripts/embed-web.sh")
        }
    }

    private func get(_ assets: WebAssets, _ path: String, ifNoneMatch: String? = nil, method: String = "GET") -> PlainHTTPResponse? {
        var headers = HTTPFields()
        if let ifNoneMatch { headers.add(name: "If-None-Match", value: ifNoneMatch) }
        return assets.response(PlainHTTPRequest(method: method, target: path, headers: headers))
    }

    @Test func theClientIsServedWithItsTypeAnETagAndCaching() throws {
        let assets = WebAssets(demo: false)
        let response = try #require(get(assets, "/client/switchboard.js?v=1"))
        #expect(response.status == 200)
        #expect(response.headers.first("Content-Type") == "text/javascript; charset=utf-8")
        #expect(response.headers.first("Cache-Control") == "public, max-age=3600")
        let file = try String(contentsOf: Self.webDirectory.appendingPathComponent("switchboard.js"), encoding: .utf8)
        #expect(String(buffer: response.body) == file)
        let etag = try #require(response.headers.first("ETag"))
        #expect(etag.hasPrefix("\"") && etag.hasSuffix("\"") && etag.count > 10)

        let revalidated = try #require(get(assets, "/client/switchboard.js", ifNoneMatch: "\"other\", W/\(etag)"))
        #expect(revalidated.status == 304)
        #expect(revalidated.body.readableBytes == 0)
        #expect(revalidated.headers.first("ETag") == etag)
        #expect(try #require(get(assets, "/client/switchboard.js", ifNoneMatch: "\"other\"")).status == 200)

        let types = try #require(get(assets, "/client/switchboard.d.ts"))
        #expect(types.status == 200 && types.headers.first("ETag") != etag)
        #expect(try #require(get(assets, "/client/switchboard.js", method: "POST")).status == 405)
        #expect(try #require(get(assets, "/client/switchboard.js", method: "HEAD")).body.readableBytes == 0)
    }

    @Test func thePagesAreServedOnlyWithTheDemoOn() throws {
        #expect(get(WebAssets(demo: false), "/") == nil)
        #expect(get(WebAssets(demo: false), "/admin") == nil)
        let demo = WebAssets(demo: true)
        for (path, type) in [
            ("/", "text/html"), ("/admin", "text/html"), ("/demo/demo.js", "text/javascript"), ("/demo/style.css", "text/css"),
        ] {
            let response = try #require(get(demo, path), "\(path)")
            #expect(response.status == 200)
            #expect(response.headers.first("Content-Type")?.hasPrefix(type) == true, "\(path)")
            #expect(response.headers.first("Cache-Control") == "no-cache")
        }
        #expect(get(demo, "/")?.headers.first("Content-Security-Policy")?.contains("default-src 'self'") == true)
        #expect(get(demo, "/nothing") == nil)
    }

    @Test func demoAccessIsOnlyDemoTopicsAndRetainsTheChat() throws {
        var configuration = BrokerConfiguration()
        configuration.addDemoAccess()
        #expect(configuration.anonymous == nil && configuration.replay.rules.isEmpty)
        try configuration.set("demo", "true", source: "test")
        configuration.addDemoAccess()
        configuration.addDemoAccess()
        #expect(configuration.anonymous == .init(subscribe: ["demo.>"], publish: ["demo.>"]))
        #expect(configuration.replay.rules.map(\.pattern.name) == ["demo.chat.>"])
        #expect(throws: BrokerConfiguration.Error.self) { try configuration.set("demo", "yes", source: "test") }
        var fromJSON = BrokerConfiguration()
        try fromJSON.apply(configJSON: Data(#"{"demo":true}"#.utf8), source: "test.json")
        #expect(fromJSON.demo)
    }
}
