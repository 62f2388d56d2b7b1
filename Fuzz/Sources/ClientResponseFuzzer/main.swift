// libFuzzer entry point for the client's view of the server's answer: the response head
// parser `ClientHandshakeHandler` reads with, then `ClientHandshake` (the code it runs on
// a 101) for three clients: one offering subprotocols and the default permessage-deflate
// offer, one offering no subprotocol and a demanding offer, one offering `switchboard.v1`
// and no extension. The input is what the server sends (its key is the RFC's sample).
//
// Checks: every rejection is one line; an accepted answer's subprotocol was offered, its
// deflate parameters exist only for an offer and keep within it; a client engine built
// with them compresses a message that a server engine built with them inflates back.
import FuzzerSupport
import NIOCore
import WebSocketCore
@_spi(Fuzzing) import WebSockets

runFuzzer(fuzz)

struct Client {
    /// The RFC 6455 §1.3 sample key; its accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    var protocols: [String]
    var deflate: PerMessageDeflateOptions?

    static let all = [
        Client(protocols: ["chat", "superchat"], deflate: PerMessageDeflateOptions()),
        Client(
            protocols: [],
            deflate: PerMessageDeflateOptions(
                serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 10,
                clientMaxWindowBits: 12)),
        Client(protocols: ["switchboard.v1"], deflate: nil),
    ]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    let head: Handshake.ResponseHead
    do {
        guard let parsed = try Handshake.parseResponseHead(bytes, maxSize: ClientOptions().maxHandshakeSize) else {
            return 0
        }
        head = parsed
    } catch {
        checkOneLine(error.reason, "response head rejection")
        return 0
    }
    require(head.length > 0 && head.length <= bytes.count, "head length out of the input")
    for client in Client.all {
        check(head, client)
    }
    return 0
}

func check(_ head: Handshake.ResponseHead, _ client: Client) {
    let offer = client.deflate.map { PerMessageDeflate.makeOffer(options: $0) }
    let response: ServerResponseInfo
    let deflate: PerMessageDeflateParameters?
    do {
        (response, deflate) = try ClientHandshake.accept(
            status: head.status, headers: head.headers, key: Client.key, protocols: client.protocols, offer: offer)
    } catch {
        checkOneLine(error.description, "client rejection")
        return
    }
    require(head.status == 101, "accepted status \(head.status)")
    if let subprotocol = response.subprotocol {
        require(client.protocols.contains(subprotocol), "accepted a subprotocol we did not offer")
    }
    for accepted in response.extensions {
        require(
            offer != nil && accepted.name.lowercased() == PerMessageDeflate.extensionName,
            "accepted an extension we did not offer")
    }
    guard let deflate, let options = client.deflate else {
        require(deflate == nil, "deflate parameters without an offer")
        return
    }
    require(
        (8...15).contains(deflate.serverMaxWindowBits) && (8...15).contains(deflate.clientMaxWindowBits),
        "window bits out of range")
    if options.serverNoContextTakeover { require(deflate.serverNoContextTakeover, "lost server_no_context_takeover") }
    if options.clientNoContextTakeover { require(deflate.clientNoContextTakeover, "lost client_no_context_takeover") }
    if let bits = options.serverMaxWindowBits { require(deflate.serverMaxWindowBits <= bits, "server window grew") }
    if let bits = options.clientMaxWindowBits { require(deflate.clientMaxWindowBits <= bits, "client window grew") }
    roundTrip(deflate, options)
}

/// The agreement is usable: what our client compresses, a server holding the same
/// parameters inflates back.
func roundTrip(_ parameters: PerMessageDeflateParameters, _ options: PerMessageDeflateOptions) {
    let message = ByteBuffer(string: String(repeating: "a fuzzed agreement must still carry messages. ", count: 8))
    let client = PerMessageDeflate(role: .client, parameters: parameters, options: options)
    let server = PerMessageDeflate(role: .server, parameters: parameters)
    do {
        let compressed = try client.compress(message, allocator: ByteBufferAllocator())
        var output = ByteBuffer()
        try server.decompress(compressed, isFinal: true, into: &output, limit: 1 << 16)
        require(output == message, "the agreed parameters do not round-trip a message")
    } catch {
        fatalError("the agreed parameters fail a message: \(error)")
    }
}
