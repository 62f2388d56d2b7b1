import WebSocketCore

/// The client's check of the server's `101` answer, without I/O: what
/// `ClientHandshakeHandler` runs on a parsed response head. SPI so that the fuzzers run
/// exactly this code.
@_spi(Fuzzing) public enum ClientHandshake {
    /// Checks a 101 against the request we sent (`key`, the subprotocols offered, our
    /// permessage-deflate `offer` if any): RFC 6455 §4.1 (`Handshake.validateResponse`), then
    /// RFC 7692 §7.1 for a permessage-deflate the server accepted. Returns what was agreed,
    /// with the deflate parameters when it was; a broken rule is `ConnectError.invalidResponse`.
    public static func accept(
        status: Int, headers: HTTPFields, key: String, protocols: [String], offer: ExtensionOffer?
    ) throws(ConnectError) -> (response: ServerResponseInfo, deflate: PerMessageDeflateParameters?) {
        let response: ServerResponseInfo
        do {
            response = try Handshake.validateResponse(
                status: status, headers: headers, key: key, requestedProtocols: protocols,
                offeredExtensionNames: offer == nil ? [] : [PerMessageDeflate.extensionName])
        } catch {
            throw .invalidResponse(error.reason)
        }
        guard let offer,
            let agreed = response.extensions.first(where: { $0.name.lowercased() == PerMessageDeflate.extensionName })
        else {
            return (response, nil)
        }
        do {
            return (response, try PerMessageDeflate.accept(response: agreed, offer: offer))
        } catch {
            throw .invalidResponse(error.reason)
        }
    }
}
