import Foundation
import NIOCore
import WebSocketCore
import WebSockets

/// The files the broker serves to browsers, from the copy of web/ embedded in the binary
/// (docs/browser.md): the client library under `/client/` always, the demo and admin
/// pages when the demo is on. Answered only to requests that are not upgrades, so the
/// WebSocket path never routes through here.
struct WebAssets: Sendable {
    struct Asset: Sendable {
        var contentType: String
        var cacheControl: String
        var etag: String
        var body: ByteBuffer
    }

    private let assets: [String: Asset]

    /// The client library: no token needed, cached for an hour, revalidated by its ETag.
    static let clientPaths = ["/client/switchboard.js": "switchboard.js", "/client/switchboard.d.ts": "switchboard.d.ts"]
    /// The demo's pages and their scripts: revalidated on every load (they change with the broker).
    static let demoPaths = [
        "/": "index.html", "/admin": "admin.html", "/demo/demo.js": "demo.js", "/demo/admin.js": "admin.js",
        "/demo/style.css": "style.css",
    ]

    init(demo: Bool) {
        let files = Dictionary(EmbeddedWeb.files.map { ($0.name, $0.text + "\n") }, uniquingKeysWith: { first, _ in first })
        var assets: [String: Asset] = [:]
        func add(_ routes: [String: String], cacheControl: String) {
            for (path, name) in routes {
                guard let text = files[name] else { continue }
                let digest = Base64URL.encode(TokenCrypto.sha256(text.utf8).prefix(12))
                assets[path] = Asset(
                    contentType: Self.contentType(of: name), cacheControl: cacheControl, etag: "\"\(digest)\"",
                    body: ByteBuffer(string: text))
            }
        }
        add(Self.clientPaths, cacheControl: "public, max-age=3600")
        if demo { add(Self.demoPaths, cacheControl: "no-cache") }
        self.assets = assets
    }

    /// The answer for `request` when its path is one of the assets; nil otherwise.
    func response(_ request: PlainHTTPRequest) -> PlainHTTPResponse? {
        guard let asset = assets[request.path] else { return nil }
        var headers = HTTPFields()
        guard request.method == "GET" || request.method == "HEAD" else {
            headers.add(name: "Allow", value: "GET, HEAD")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            return PlainHTTPResponse(status: 405, headers: headers, body: ByteBuffer(string: "\(request.method) is not allowed here (allowed: GET, HEAD)\n"))
        }
        headers.add(name: "ETag", value: asset.etag)
        headers.add(name: "Cache-Control", value: asset.cacheControl)
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        if Self.matches(request.headers.first("If-None-Match"), asset.etag) {
            return PlainHTTPResponse(status: 304, headers: headers)
        }
        headers.add(name: "Content-Type", value: asset.contentType)
        if asset.contentType.hasPrefix("text/html") {
            // The pages load only their own scripts and talk only to this broker.
            headers.add(
                name: "Content-Security-Policy",
                value: "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'")
            headers.add(name: "Referrer-Policy", value: "no-referrer")
        }
        return PlainHTTPResponse(status: 200, headers: headers, body: request.method == "HEAD" ? ByteBuffer() : asset.body)
    }

    /// `If-None-Match`: `*` or a list of entity tags, weak ones compared weakly (RFC 9110 13.1.2).
    static func matches(_ header: String?, _ etag: String) -> Bool {
        guard let header else { return false }
        return header.split(separator: ",").contains { candidate in
            let tag = candidate.trimmingCharacters(in: .whitespaces)
            return tag == "*" || tag == etag || tag == "W/" + etag
        }
    }

    static func contentType(of name: String) -> String {
        switch name.split(separator: ".").last {
        case "js": "text/javascript; charset=utf-8"
        case "ts": "application/typescript; charset=utf-8"
        case "html": "text/html; charset=utf-8"
        case "css": "text/css; charset=utf-8"
        default: "application/octet-stream"
        }
    }
}
