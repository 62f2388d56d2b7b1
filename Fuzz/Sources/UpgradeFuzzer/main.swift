// libFuzzer entry point for the server's side of the opening handshake, as a server runs
// it: the bytes go through NIO's HTTP request decoder (set up as `WebSocketServer`'s
// pipeline sets it up), the head it yields through `ServerHandshake` (the code
// `ServerUpgradeHandler` runs) and the accessors an application's hooks call
// (`UpgradeRequest.path`, `.query`, `.clientAddress` from a proxy the options may trust).
//
// Input: byte 0 chooses the server's options (see `serverOptions`), the rest is what the
// client sends. Checks: a rejection is 400/404/405/426 with a one-line body; an accepted
// request's 101, encoded by NIO's response encoder, parses with the client's parser and
// passes the client's own check (`ClientHandshake`) with the subprotocol and the
// permessage-deflate parameters the server chose; no header of it spans lines.
import FuzzerSupport
import NIOCore
import NIOEmbedded
import NIOHTTP1
import WebSocketCore
@_spi(Fuzzing) import WebSockets

runFuzzer(fuzz)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    guard let selector = bytes.first, let head = requestHead(Array(bytes.dropFirst())) else { return 0 }
    let options = serverOptions(selector)

    let info: ClientRequestInfo
    let request: UpgradeRequest
    do {
        (info, request) = try ServerHandshake.check(head, remoteAddress: Peer.proxy, options: options)
    } catch {
        require([400, 404, 405, 426].contains(error.status), "rejected with status \(error.status)")
        require(!error.body.isEmpty, "rejected without a reason")
        checkOneLine(error.body, "rejection body")
        for field in error.headers { checkOneLine(field.value, "rejection header \(field.name)") }
        return 0
    }
    // What an application's verifyClient reads.
    _ = request.path
    _ = request.query
    require(request.clientAddress != nil, "no client address for a peer with an IP address")

    let acceptance = ServerHandshake.accept(info, request: request, extraHeaders: HTTPFields(), options: options)
    if let subprotocol = acceptance.subprotocol {
        require(info.protocols.contains(subprotocol), "selected a subprotocol the client did not offer")
    }
    require((acceptance.deflate == nil) == acceptance.extensions.isEmpty, "deflate parameters without a response")
    for field in acceptance.headers {
        checkOneLine(field.name, "101 header name")
        checkOneLine(field.value, "101 header \(field.name)")
    }

    // The client's view of this 101: the offer the server took is the first one it takes alone.
    let offer = acceptance.deflate == nil ? nil : info.extensions.first { offer in
        options.perMessageDeflate.flatMap { PerMessageDeflate.negotiate(offers: [offer], options: $0) } != nil
    }
    let encoded = responseBytes(acceptance.headers)
    let parsed: Handshake.ResponseHead?
    do {
        parsed = try Handshake.parseResponseHead(encoded, maxSize: 1 << 16)
    } catch {
        fatalError("own 101 does not parse: \(error.reason)")
    }
    guard let parsed, parsed.status == 101, parsed.length == encoded.count else {
        fatalError("own 101 is incomplete or not a 101")
    }
    do {
        let (response, deflate) = try ClientHandshake.accept(
            status: parsed.status, headers: parsed.headers, key: info.key, protocols: info.protocols, offer: offer)
        require(response.subprotocol == acceptance.subprotocol, "client sees another subprotocol")
        require(deflate == acceptance.deflate, "client and server disagree on permessage-deflate")
    } catch {
        fatalError("client rejects our own 101: \(error)")
    }
    return 0
}

/// The first request head NIO's decoder yields from `bytes` together with its end (the
/// upgrade handler acts on `.end`); nil when there is none.
func requestHead(_ bytes: [UInt8]) -> HTTPRequestHead? {
    let channel = EmbeddedChannel(handler: ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .forwardBytes)))
    defer { _ = try? channel.finish() }
    do {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
    } catch {
        // The standalone server answers a parse error with this body.
        checkOneLine("malformed HTTP request: \(error)", "parse error answer")
    }
    var head: HTTPRequestHead?
    while let part = try? channel.readInbound(as: HTTPServerRequestPart.self) {
        switch part {
        case .head(let first) where head == nil: head = first
        case .end where head != nil: return head
        default: break
        }
    }
    return nil
}

/// The server's options, from the input's first byte: bit 0 enables permessage-deflate with
/// the variant in bits 1–2; bit 3 serves only `/chat`; bit 4 enables version 13 only; bit 5
/// speaks `switchboard.v1` instead of `chat`, `superchat`; bit 6 selects the client's first
/// subprotocol whatever it is.
func serverOptions(_ selector: UInt8) -> WebSocketServer.Options {
    var options = WebSocketServer.Options()
    if selector & 1 != 0 {
        options.perMessageDeflate = switch selector >> 1 & 3 {
        case 0: PerMessageDeflateOptions()
        case 1: PerMessageDeflateOptions(serverNoContextTakeover: true, serverMaxWindowBits: 10)
        case 2: PerMessageDeflateOptions(clientMaxWindowBits: 9)
        default: PerMessageDeflateOptions(clientNoContextTakeover: true, serverMaxWindowBits: 8, clientMaxWindowBits: 12)
        }
    }
    if selector & 8 != 0 { options.path = "/chat" }
    if selector & 16 != 0 { options.versions = [.v13] }
    options.protocols = selector & 32 != 0 ? ["switchboard.v1"] : ["chat", "superchat"]
    if selector & 64 != 0 { options.selectSubprotocol = { offered, _ in offered.first } }
    if selector & 128 != 0 { options.trustedProxies = ["127.0.0.1"] }
    return options
}

/// The peer every request comes from: a proxy whose `X-Forwarded-For` the options trust
/// when the selector's bit 7 is set. (A static, not a top-level `let`: main.swift's globals
/// are set in order, after `runFuzzer` has already started calling `fuzz`.)
enum Peer {
    static let proxy = try? SocketAddress(ipAddress: "127.0.0.1", port: 8080)
}

/// The 101 as NIO's response encoder writes it.
func responseBytes(_ headers: HTTPFields) -> [UInt8] {
    let channel = EmbeddedChannel(handler: HTTPResponseEncoder())
    defer { _ = try? channel.finish() }
    let head = HTTPResponseHead(
        version: .http1_1, status: .switchingProtocols, headers: HTTPHeaders(headers.map { ($0.name, $0.value) }))
    do {
        try channel.writeOutbound(HTTPServerResponsePart.head(head))
    } catch {
        fatalError("NIO does not encode our 101: \(error)")
    }
    var bytes: [UInt8] = []
    while let buffer = try? channel.readOutbound(as: ByteBuffer.self) {
        bytes += buffer.readableBytesView
    }
    return bytes
}
