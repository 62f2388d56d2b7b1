// libFuzzer entry point for the opening handshake: the strict request-head parser, the
// server's request validation, the client's response validation and the header grammar.
// Besides "no crash", it checks a few properties that must hold for every input.
import FuzzerSupport
import WebSocketCore

// SwiftPM links an executable's `main` to this module's top-level code, so libFuzzer's
// own `main` is not used: hand control to its driver here instead.
runFuzzer(fuzz)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)

    // The input as a request head, then as a handshake request and as a 101 response.
    do {
        let head = try Handshake.parseRequestHead(bytes, maxSize: 4096)
        require(head.length <= bytes.count, "head length past the input")
        do {
            let info = try Handshake.validateRequest(method: head.method, version: head.version, headers: head.headers)
            // A request we accept has a key we can answer, and our answer passes our own client check.
            let response = Handshake.responseHeaders(
                key: info.key, protocol: info.protocols.first, extensions: info.extensions)
            let accepted = try? Handshake.validateResponse(
                status: 101, headers: response, key: info.key, requestedProtocols: info.protocols,
                offeredExtensionNames: Set(info.extensions.map(\.name)))
            require(accepted != nil || hasRepeatedName(info.extensions), "own response rejected")
        } catch {
            checkOneLine(error.reason, "handshake rejection")
        }
        do {
            _ = try Handshake.validateResponse(
                status: 101, headers: head.headers, key: "dGhlIHNhbXBsZSBub25jZQ==",
                requestedProtocols: ["chat"], offeredExtensionNames: ["permessage-deflate"])
        } catch {
            checkOneLine(error.reason, "handshake rejection")
        }
    } catch {
        checkOneLine(error.reason, "handshake rejection")
    }

    // The input as one header value.
    let text = String(decoding: bytes, as: UTF8.self)
    if let offers = try? ExtensionOffer.parseList([text]) {
        // What we parse, we write so that it parses back the same.
        let again = try? ExtensionOffer.parseList([offers.headerValue])
        require(again == offers, "extension offers do not round-trip")
    }
    _ = try? HeaderGrammar.parseTokenList([text], header: "Sec-WebSocket-Protocol", allowDuplicates: false)
    _ = try? HeaderGrammar.parseProtocolList([text])

    // Strict base64: whatever decodes is the canonical encoding of what it decodes to.
    if let decoded = Crypto.base64Decode(text) {
        require(Crypto.base64Encode(decoded) == text, "base64 accepted a non-canonical encoding")
    }
    return 0
}

private func hasRepeatedName(_ offers: [ExtensionOffer]) -> Bool {
    Set(offers.map(\.name)).count != offers.count
}
