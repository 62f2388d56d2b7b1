import NIOCore
import NIOHTTP1
import WebSocketCore

/// The server's decisions in the opening handshake, without I/O: what `ServerUpgradeHandler`
/// makes of a request head before and after the application's `verifyClient` hook. The
/// handler keeps what needs the channel (the connection count, the hook's asynchrony, the
/// writes). SPI so that the fuzzers run exactly this code on the heads NIO parses.
@_spi(Fuzzing) public enum ServerHandshake {
    /// An HTTP error answer: status, one-line body, extra headers.
    public struct Rejection: Error, Sendable, Hashable {
        public var status: Int
        public var body: String
        public var headers: HTTPFields

        init(_ status: Int, _ body: String, headers: HTTPFields = HTTPFields()) {
            self.status = status
            self.body = body
            self.headers = headers
        }
    }

    /// What the 101 answer says and what the connection then speaks.
    public struct Acceptance: Sendable {
        /// Every header of the 101 answer.
        public var headers: HTTPFields
        public var subprotocol: String?
        /// The accepted extensions as the answer names them.
        public var extensions: [ExtensionOffer]
        /// permessage-deflate's parameters when it was agreed (with `options.perMessageDeflate`).
        public var deflate: PerMessageDeflateParameters?
    }

    /// Checks a request head as NIO parsed it, in this order: the path (`options.path`, 404),
    /// the rules of RFC 6455 §4.2.1 (`Handshake.validateRequest`), the enabled versions (426).
    /// Returns what the client asked for and the request as the application's hooks see it.
    public static func check(
        _ head: HTTPRequestHead, remoteAddress: SocketAddress?, options: WebSocketServer.Options
    ) throws(Rejection) -> (info: ClientRequestInfo, request: UpgradeRequest) {
        // Built with its exact size: the connection keeps it (`WebSocket.request`).
        let headers = HTTPFields(head.headers.map { HTTPFields.Field(name: $0.name, value: $0.value) })
        if let path = options.path, HandshakeInfo(target: head.uri).path != path {
            throw Rejection(404, "no WebSocket endpoint at \(head.uri.prefix { $0 != "?" })")
        }
        let info: ClientRequestInfo
        do {
            info = try Handshake.validateRequest(
                method: head.method.rawValue,
                version: Handshake.HTTPVersion(major: head.version.major, minor: head.version.minor), headers: headers)
        } catch {
            throw Rejection(error.status, error.reason, headers: error.responseHeaders)
        }
        guard options.versions.contains(info.version) else {
            let enabled = options.versions.map(\.rawValue).sorted(by: >).map(String.init).joined(separator: ", ")
            throw Rejection(
                426, "Sec-WebSocket-Version \(info.version.rawValue) is not enabled on this server",
                headers: ["Sec-WebSocket-Version": enabled])
        }
        let request = UpgradeRequest(
            target: head.uri, headers: headers, remoteAddress: remoteAddress, origin: info.origin,
            protocols: info.protocols, version: info.version, trustedProxies: options.trustedProxies)
        return (info, request)
    }

    /// The answer to a request `verifyClient` accepted with `extraHeaders`: the subprotocol
    /// `options` picks (`selectSubprotocol`, or the first offered that `protocols` lists),
    /// permessage-deflate when both sides want it, the handshake's headers, then
    /// `extraHeaders`, then those of `options.responseHeaders`.
    public static func accept(
        _ info: ClientRequestInfo, request: UpgradeRequest, extraHeaders: HTTPFields, options: WebSocketServer.Options
    ) -> Acceptance {
        let subprotocol = options.subprotocol(offered: info.protocols, request: request)
        var deflate: PerMessageDeflateParameters?
        var extensions: [ExtensionOffer] = []
        if let deflateOptions = options.perMessageDeflate,
            let agreement = PerMessageDeflate.negotiate(offers: info.extensions, options: deflateOptions)
        {
            deflate = agreement.parameters
            extensions.append(agreement.response)
        }
        var headers = Handshake.responseHeaders(key: info.key, protocol: subprotocol, extensions: extensions)
        for field in extraHeaders { headers.add(name: field.name, value: field.value) }
        if let hook = options.responseHeaders {
            for field in hook(request) { headers.add(name: field.name, value: field.value) }
        }
        return Acceptance(headers: headers, subprotocol: subprotocol, extensions: extensions, deflate: deflate)
    }
}
