/// Settings for permessage-deflate (RFC 7692), the same knobs as Node `ws`'s
/// `perMessageDeflate` option. One value configures either side:
///
/// - on a **server** the `server*`/`client*` fields say what the server requires or
///   imposes when it accepts a client's offer (`PerMessageDeflate.negotiate`);
/// - on a **client** they say what the client asks of the server in its offer
///   (`PerMessageDeflate.makeOffer`) and what it insists on in the response
///   (`PerMessageDeflate.accept`).
///
/// Window bits must be in 8...15, `level` in -1...9 and `memLevel` in 1...9; `validate()`
/// names the first bad field. `WebSocketServer.listen()`, `upgradeHandler(routes:)` and
/// `WebSocket.connect` validate the options they are given and throw `InvalidOption`; the
/// negotiation functions and the engine, used directly, trap on invalid options, so check
/// options built from configuration with `validate()` before calling them.
public struct PerMessageDeflateOptions: Sendable, Hashable {
    /// Server: always tell the client the server will reset its compressor after every
    /// message (`server_no_context_takeover`). Client: ask the server to do so, and fail the
    /// handshake if it does not agree. Default `false`.
    public var serverNoContextTakeover: Bool
    /// Server: require the client to reset its compressor after every message
    /// (`client_no_context_takeover` in the response). Client: reset our compressor after
    /// every message and say so in the offer. Default `false`.
    public var clientNoContextTakeover: Bool
    /// Server: the largest LZ77 window the server compresses with (sent as
    /// `server_max_window_bits` in the response). Client: ask the server to use at most this
    /// window (`server_max_window_bits` in the offer). `nil` (default): no limit (15).
    public var serverMaxWindowBits: Int?
    /// Server: limit the client's window to this (`client_max_window_bits=N` in the response);
    /// offers that do not carry `client_max_window_bits` are then declined, as in `ws`.
    /// Client: offer `client_max_window_bits=N` (we will compress with at most N); `nil`
    /// (default) offers `client_max_window_bits` without a value ("the server may limit me").
    public var clientMaxWindowBits: Int?
    /// zlib compression level, -1 (`Z_DEFAULT_COMPRESSION`, i.e. 6) ... 9. Default -1, as `ws`.
    public var level: Int32
    /// zlib memLevel 1...9 (memory for the compressor's internal state). Default 8.
    public var memLevel: Int32
    /// Messages with fewer payload bytes than this are sent uncompressed. Default 1024, as `ws`.
    public var threshold: Int
    /// How many compress/decompress jobs the I/O layer may run at once; carried, not used here.
    /// Default 10, as `ws`.
    public var concurrencyLimit: Int

    /// Options with every field at its default (the same as `ws`'s).
    public init(
        serverNoContextTakeover: Bool = false,
        clientNoContextTakeover: Bool = false,
        serverMaxWindowBits: Int? = nil,
        clientMaxWindowBits: Int? = nil,
        level: Int32 = -1,
        memLevel: Int32 = 8,
        threshold: Int = 1024,
        concurrencyLimit: Int = 10
    ) {
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
        self.level = level
        self.memLevel = memLevel
        self.threshold = threshold
        self.concurrencyLimit = concurrencyLimit
    }

    /// Throws `InvalidOption` naming the first field out of range.
    public func validate() throws(InvalidOption) {
        if let bits = serverMaxWindowBits { try InvalidOption.check("serverMaxWindowBits", bits, in: 8...15) }
        if let bits = clientMaxWindowBits { try InvalidOption.check("clientMaxWindowBits", bits, in: 8...15) }
        try InvalidOption.check("level", level, in: -1...9)
        try InvalidOption.check("memLevel", memLevel, in: 1...9)
        try InvalidOption.check("threshold", threshold, atLeast: 0)
        try InvalidOption.check("concurrencyLimit", concurrencyLimit, atLeast: 1)
    }

    /// The engine and the negotiation functions take validated options only: the I/O layer
    /// validates them where they are given (`listen`, `upgradeHandler(routes:)`, `connect`),
    /// and a direct caller must call `validate()` first, so this cannot fire from input.
    func precheck() {
        do { try validate() } catch { preconditionFailure("invalid PerMessageDeflateOptions: \(error)") }
    }
}

/// What both ends agreed on in the handshake (RFC 7692 §7.1). "Server" and "client" name the
/// side that *compresses*: `serverMaxWindowBits` bounds the window of the messages the server
/// sends, `clientNoContextTakeover` means the client resets its compressor after each message.
public struct PerMessageDeflateParameters: Sendable, Hashable {
    /// Whether the server resets its compressor after every message.
    public var serverNoContextTakeover: Bool
    /// Whether the client resets its compressor after every message.
    public var clientNoContextTakeover: Bool
    /// 8...15; 15 when not negotiated.
    public var serverMaxWindowBits: Int
    /// 8...15; 15 when not negotiated.
    public var clientMaxWindowBits: Int

    /// Parameters as negotiated; the defaults are what applies when none was negotiated.
    public init(
        serverNoContextTakeover: Bool = false,
        clientNoContextTakeover: Bool = false,
        serverMaxWindowBits: Int = 15,
        clientMaxWindowBits: Int = 15
    ) {
        self.serverNoContextTakeover = serverNoContextTakeover
        self.clientNoContextTakeover = clientNoContextTakeover
        self.serverMaxWindowBits = serverMaxWindowBits
        self.clientMaxWindowBits = clientMaxWindowBits
    }
}

/// The result of a successful server-side negotiation: the parameters to build the engine
/// with, and the extension element to put in the 101 response's `Sec-WebSocket-Extensions`.
public struct PerMessageDeflateAgreement: Sendable, Hashable {
    /// What the engine is built with.
    public var parameters: PerMessageDeflateParameters
    /// The element to answer in `Sec-WebSocket-Extensions`.
    public var response: ExtensionOffer

    /// An agreement on `parameters`, answered with `response`.
    public init(parameters: PerMessageDeflateParameters, response: ExtensionOffer) {
        self.parameters = parameters
        self.response = response
    }
}

// MARK: - Negotiation (RFC 7692 §5, §7.1)

extension PerMessageDeflate {
    /// The extension token, `permessage-deflate`.
    public static let extensionName = "permessage-deflate"

    static let serverNoContextTakeoverName = "server_no_context_takeover"
    static let clientNoContextTakeoverName = "client_no_context_takeover"
    static let serverMaxWindowBitsName = "server_max_window_bits"
    static let clientMaxWindowBitsName = "client_max_window_bits"

    /// Server side: picks the first acceptable `permessage-deflate` element of the client's
    /// `Sec-WebSocket-Extensions` (elements with other names are ignored) and returns the
    /// agreed parameters with the response element, or `nil` when none is acceptable (the
    /// server then answers without permessage-deflate; that is not an error, RFC 7692 §5).
    ///
    /// An offer is declined when it has an unknown or duplicated parameter, a value on a
    /// `*_no_context_takeover` parameter, a `server_max_window_bits` without a value or any
    /// window-bits value that is not a decimal 8...15 without leading zeros (§7.1), or when
    /// `options.clientMaxWindowBits` is set but the offer lacks `client_max_window_bits`
    /// (the server could not limit the client's window; §7.1.2.2).
    ///
    /// The response always contains what the server must confirm: `server_no_context_takeover`
    /// if offered or required by the options; `server_max_window_bits` (the smaller of the
    /// offered value and the option) if either is present; `client_no_context_takeover` if
    /// offered (binding the client's hint) or required; `client_max_window_bits` only if the
    /// client offered it, with the smaller of its value and the option.
    public static func negotiate(
        offers: [ExtensionOffer],
        options: PerMessageDeflateOptions
    ) -> PerMessageDeflateAgreement? {
        options.precheck()
        for offer in offers where isPerMessageDeflate(offer.name) {
            guard case .success(let offered) = OfferedParameters.parse(offer, isResponse: false) else { continue }

            if options.clientMaxWindowBits != nil, offered.clientMaxWindowBits == .absent { continue }

            var parameters = PerMessageDeflateParameters()
            var response = ExtensionOffer(name: extensionName)

            if offered.serverNoContextTakeover || options.serverNoContextTakeover {
                parameters.serverNoContextTakeover = true
                response.parameters.append(.init(serverNoContextTakeoverName))
            }
            if offered.clientNoContextTakeover || options.clientNoContextTakeover {
                parameters.clientNoContextTakeover = true
                response.parameters.append(.init(clientNoContextTakeoverName))
            }
            if offered.serverMaxWindowBits != nil || options.serverMaxWindowBits != nil {
                let bits = min(offered.serverMaxWindowBits ?? 15, options.serverMaxWindowBits ?? 15)
                parameters.serverMaxWindowBits = bits
                response.parameters.append(.init(serverMaxWindowBitsName, String(bits)))
            }
            switch offered.clientMaxWindowBits {
            case .absent:
                break
            case .withoutValue:
                if let bits = options.clientMaxWindowBits {
                    parameters.clientMaxWindowBits = bits
                    response.parameters.append(.init(clientMaxWindowBitsName, String(bits)))
                }
            case .value(let offeredBits):
                // The client promised to stay within `offeredBits`; echo it (or our smaller
                // limit) so both sides record the same value.
                let bits = min(offeredBits, options.clientMaxWindowBits ?? 15)
                parameters.clientMaxWindowBits = bits
                response.parameters.append(.init(clientMaxWindowBitsName, String(bits)))
            }
            return PerMessageDeflateAgreement(parameters: parameters, response: response)
        }
        return nil
    }

    /// Client side: the `permessage-deflate` element to send in the request.
    /// `client_max_window_bits` is always offered (with the option's value if set) so the
    /// server may limit our window.
    public static func makeOffer(options: PerMessageDeflateOptions) -> ExtensionOffer {
        options.precheck()
        var offer = ExtensionOffer(name: extensionName)
        if options.serverNoContextTakeover {
            offer.parameters.append(.init(serverNoContextTakeoverName))
        }
        if options.clientNoContextTakeover {
            offer.parameters.append(.init(clientNoContextTakeoverName))
        }
        if let bits = options.serverMaxWindowBits {
            offer.parameters.append(.init(serverMaxWindowBitsName, String(bits)))
        }
        offer.parameters.append(.init(clientMaxWindowBitsName, options.clientMaxWindowBits.map { String($0) }))
        return offer
    }

    /// Client side: validates the server's `permessage-deflate` response element against the
    /// offer `makeOffer(options:)` produces. See `accept(response:offer:)`.
    public static func accept(
        response: ExtensionOffer,
        options: PerMessageDeflateOptions
    ) throws(WebSocketError) -> PerMessageDeflateParameters {
        try accept(response: response, offer: makeOffer(options: options))
    }

    /// Client side: validates the server's response element against the offer the client
    /// sent (RFC 7692 §7.1) and returns the agreed parameters. Throws a `.protocolError`
    /// `WebSocketError` whose reason names the broken rule when the response: is not
    /// `permessage-deflate`; has an unknown or duplicated parameter or an invalid value;
    /// has `client_max_window_bits` without a value, or although it was not offered, or
    /// larger than offered; lacks `server_no_context_takeover` that was offered; lacks
    /// `server_max_window_bits` that was offered, or has a larger value than offered.
    /// The client must then fail the connection (the handshake code wraps the error).
    ///
    /// `offer` must be a valid permessage-deflate offer (such as `makeOffer`'s); traps otherwise.
    public static func accept(
        response: ExtensionOffer,
        offer: ExtensionOffer
    ) throws(WebSocketError) -> PerMessageDeflateParameters {
        let offered: OfferedParameters
        switch OfferedParameters.parse(offer, isResponse: false) {
        case .success(let value) where isPerMessageDeflate(offer.name): offered = value
        // The offer is our own (`makeOffer` of validated options), never a peer's.
        default: preconditionFailure("accept(response:offer:) needs a valid permessage-deflate offer")
        }

        guard isPerMessageDeflate(response.name) else {
            throw .protocolError("permessage-deflate: response names extension \"\(response.name.prefix(40))\"")
        }
        let answered: OfferedParameters
        switch OfferedParameters.parse(response, isResponse: true) {
        case .success(let value): answered = value
        case .failure(let error): throw .protocolError("permessage-deflate response: \(error.reason)")
        }

        if offered.serverNoContextTakeover && !answered.serverNoContextTakeover {
            throw .protocolError("permessage-deflate response: server_no_context_takeover was offered but not confirmed")
        }
        if let asked = offered.serverMaxWindowBits {
            guard let bits = answered.serverMaxWindowBits else {
                throw .protocolError("permessage-deflate response: server_max_window_bits was offered but not confirmed")
            }
            if bits > asked {
                throw .protocolError("permessage-deflate response: server_max_window_bits=\(bits) exceeds offered \(asked)")
            }
        }
        var clientBits = 15
        switch (offered.clientMaxWindowBits, answered.clientMaxWindowBits) {
        case (.absent, .value):
            throw .protocolError("permessage-deflate response: client_max_window_bits was not offered")
        case (.value(let asked), .value(let bits)) where bits > asked:
            throw .protocolError("permessage-deflate response: client_max_window_bits=\(bits) exceeds offered \(asked)")
        case (_, .value(let bits)):
            clientBits = bits
        case (.value(let promised), _):
            clientBits = promised
        default:
            break
        }
        return PerMessageDeflateParameters(
            serverNoContextTakeover: answered.serverNoContextTakeover,
            clientNoContextTakeover: answered.clientNoContextTakeover || offered.clientNoContextTakeover,
            serverMaxWindowBits: answered.serverMaxWindowBits ?? 15,
            clientMaxWindowBits: clientBits
        )
    }

    static func isPerMessageDeflate(_ name: String) -> Bool {
        name.utf8.count == 18 && name.lowercased() == extensionName
    }
}

/// The parameters of one permessage-deflate element, checked for the grammar of RFC 7692 §7.1.
struct OfferedParameters: Hashable {
    enum ClientWindowBits: Hashable {
        case absent
        case withoutValue
        case value(Int)
    }

    var serverNoContextTakeover = false
    var clientNoContextTakeover = false
    var serverMaxWindowBits: Int?
    var clientMaxWindowBits = ClientWindowBits.absent

    struct Invalid: Error { var reason: String }

    /// `isResponse`: `client_max_window_bits` must then carry a value (§7.1.2.2).
    static func parse(_ element: ExtensionOffer, isResponse: Bool) -> Result<OfferedParameters, Invalid> {
        var result = OfferedParameters()
        var seen = Set<String>()
        for parameter in element.parameters {
            let name = parameter.name.lowercased()
            let shownName = String(parameter.name.prefix(40))
            guard seen.insert(name).inserted else {
                return .failure(Invalid(reason: "duplicate parameter \(shownName)"))
            }
            switch name {
            case PerMessageDeflate.serverNoContextTakeoverName, PerMessageDeflate.clientNoContextTakeoverName:
                guard parameter.value == nil else {
                    return .failure(Invalid(reason: "\(name) must not have a value"))
                }
                if name == PerMessageDeflate.serverNoContextTakeoverName {
                    result.serverNoContextTakeover = true
                } else {
                    result.clientNoContextTakeover = true
                }
            case PerMessageDeflate.serverMaxWindowBitsName:
                guard let value = parameter.value, let bits = windowBits(value) else {
                    return .failure(Invalid(reason: "\(name) must be 8...15"))
                }
                result.serverMaxWindowBits = bits
            case PerMessageDeflate.clientMaxWindowBitsName:
                if let value = parameter.value {
                    guard let bits = windowBits(value) else {
                        return .failure(Invalid(reason: "\(name) must be 8...15"))
                    }
                    result.clientMaxWindowBits = .value(bits)
                } else if isResponse {
                    return .failure(Invalid(reason: "\(name) must have a value"))
                } else {
                    result.clientMaxWindowBits = .withoutValue
                }
            default:
                return .failure(Invalid(reason: "unknown parameter \(shownName)"))
            }
        }
        return .success(result)
    }

    /// A decimal integer 8...15 without leading zeros or sign (§7.1.2.1).
    static func windowBits(_ text: String) -> Int? {
        switch text {
        case "8": return 8
        case "9": return 9
        case "10": return 10
        case "11": return 11
        case "12": return 12
        case "13": return 13
        case "14": return 14
        case "15": return 15
        default: return nil
        }
    }
}
