import CZlib
import NIOCore
import Testing
import WebSocketCore

// MARK: - Helpers

private func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
private func buffer(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }
private func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }
private let allocator = ByteBufferAllocator()

/// Deterministic pseudo-random bytes (SplitMix64).
private func noise(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var state = seed
    var result = [UInt8]()
    result.reserveCapacity(count + 8)
    while result.count < count {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        withUnsafeBytes(of: z) { result.append(contentsOf: $0) }
    }
    return Array(result.prefix(count))
}

/// Compressible text-like bytes: words from a small vocabulary, picked pseudo-randomly.
private func text(_ count: Int, seed: UInt64 = 7) -> [UInt8] {
    let words = ["switchboard", "topic", "chat.room42", "publish", "subscribe", "{\"op\":\"msg\"}",
                 "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "0123456789"]
        .map { Array($0.utf8) }
    let picks = noise(count)
    var result = [UInt8]()
    result.reserveCapacity(count + 16)
    var index = 0
    while result.count < count {
        result.append(contentsOf: words[Int(picks[index % picks.count]) % words.count])
        result.append(0x20)
        index += 1
    }
    return Array(result.prefix(count))
}

private func decompressWhole(_ engine: PerMessageDeflate, _ payload: ByteBuffer, limit: Int = .max) throws -> [UInt8] {
    var output = allocator.buffer(capacity: 0)
    try engine.decompress(payload, isFinal: true, into: &output, limit: limit)
    return bytes(output)
}

private func pair(_ parameters: PerMessageDeflateParameters, _ options: PerMessageDeflateOptions = .init())
    -> (server: PerMessageDeflate, client: PerMessageDeflate) {
    (PerMessageDeflate(role: .server, parameters: parameters, options: options),
     PerMessageDeflate(role: .client, parameters: parameters, options: options))
}

private func expectError(_ code: CloseCode, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        try body()
        Issue.record("expected an error with close code \(code)", sourceLocation: sourceLocation)
    } catch let error as WebSocketError {
        #expect(error.closeCode == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.reason.utf8.count <= 123, sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

private func offer(_ parameters: [(String, String?)]) -> ExtensionOffer {
    ExtensionOffer(name: "permessage-deflate", parameters: parameters.map { .init($0.0, $0.1) })
}

// MARK: - RFC 7692 §7.2.3 examples

@Suite struct PerMessageDeflateRFCExamplesTests {
    let hello = Array("Hello".utf8)

    @Test func helloCompressesToTheRFCBytes() throws {
        let engine = PerMessageDeflate(role: .server, parameters: .init())
        let compressed = try engine.compress(buffer("Hello"), allocator: allocator)
        #expect(bytes(compressed) == [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
    }

    @Test func helloDecompresses() throws {
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        #expect(try decompressWhole(engine, buffer([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])) == hello)
    }

    @Test func fragmentedHelloDecompresses() throws {
        // §7.2.3.1: the same payload split over two frames.
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        var output = allocator.buffer(capacity: 0)
        try engine.decompress(buffer([0xf2, 0x48, 0xcd]), isFinal: false, into: &output, limit: 100)
        try engine.decompress(buffer([0xc9, 0xc9, 0x07, 0x00]), isFinal: true, into: &output, limit: 100)
        #expect(bytes(output) == hello)
    }

    @Test func sharingTheSlidingWindow() throws {
        // §7.2.3.2: the second "Hello" is a back reference into the first message.
        let sender = PerMessageDeflate(role: .server, parameters: .init())
        let first = try sender.compress(buffer("Hello"), allocator: allocator)
        let second = try sender.compress(buffer("Hello"), allocator: allocator)
        #expect(bytes(first) == [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
        #expect(bytes(second) == [0xf2, 0x00, 0x11, 0x00, 0x00])

        let receiver = PerMessageDeflate(role: .client, parameters: .init())
        #expect(try decompressWhole(receiver, buffer([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])) == hello)
        #expect(try decompressWhole(receiver, buffer([0xf2, 0x00, 0x11, 0x00, 0x00])) == hello)
    }

    @Test func withoutContextTakeoverTheSecondMessageIsIndependent() throws {
        let parameters = PerMessageDeflateParameters(serverNoContextTakeover: true)
        let sender = PerMessageDeflate(role: .server, parameters: parameters)
        _ = try sender.compress(buffer("Hello"), allocator: allocator)
        let second = try sender.compress(buffer("Hello"), allocator: allocator)
        #expect(bytes(second) == [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
    }

    @Test func storedBlock() throws {
        // §7.2.3.3: DEFLATE block with no compression.
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        let payload: [UInt8] = [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]
        #expect(try decompressWhole(engine, buffer(payload)) == hello)
    }

    @Test func blockWithBFINALSet() throws {
        // §7.2.3.4, then a second message that refers back into the first (window kept).
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        #expect(try decompressWhole(engine, buffer([0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00])) == hello)
        #expect(try decompressWhole(engine, buffer([0xf2, 0x00, 0x11, 0x00, 0x00])) == hello)
    }

    @Test func blockWithBFINALSetAndNoTrailingOctet() throws {
        // A sender that ends the message right after the BFINAL block.
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        #expect(try decompressWhole(engine, buffer([0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])) == hello)
        #expect(try decompressWhole(engine, buffer([0xf2, 0x00, 0x11, 0x00, 0x00])) == hello)
    }

    @Test func blocksAfterABFINALBlockInTheSameMessage() throws {
        // "Hello" (BFINAL) then, in the same message, a reference back to it.
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        let payload: [UInt8] = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00] + [0xf2, 0x00, 0x11, 0x00, 0x00]
        #expect(try decompressWhole(engine, buffer(payload)) == hello + hello)
    }

    @Test func twoDeflateBlocksInOneMessage() throws {
        // §7.2.3.5
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        let payload: [UInt8] = [0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00]
        #expect(try decompressWhole(engine, buffer(payload)) == hello)
    }

    @Test func emptyMessageIsASingleZeroOctet() throws {
        // §7.2.3.6: an empty stored block's header; also after a message with context kept,
        // where zlib itself would emit nothing.
        let sender = PerMessageDeflate(role: .client, parameters: .init())
        let receiver = PerMessageDeflate(role: .server, parameters: .init())
        for message in ["", "Hello", "", "", "Hello"] {
            let compressed = try sender.compress(buffer(message), allocator: allocator)
            if message.isEmpty { #expect(bytes(compressed) == [0x00]) }
            #expect(try decompressWhole(receiver, compressed) == Array(message.utf8))
        }
    }

    @Test func emptyFragmentsAreAccepted() throws {
        let engine = PerMessageDeflate(role: .client, parameters: .init())
        var output = allocator.buffer(capacity: 0)
        try engine.decompress(buffer([]), isFinal: false, into: &output, limit: 100)
        try engine.decompress(buffer([0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]), isFinal: false, into: &output, limit: 100)
        try engine.decompress(buffer([]), isFinal: true, into: &output, limit: 100)
        #expect(bytes(output) == hello)
    }
}

// MARK: - Server negotiation

struct ServerCase: Sendable, CustomTestStringConvertible {
    var name: String
    var offers: [ExtensionOffer]
    var options = PerMessageDeflateOptions()
    /// nil: declined
    var expected: (PerMessageDeflateParameters, [ExtensionOffer.Parameter])?
    var testDescription: String { name }
}

private let serverCases: [ServerCase] = [
    ServerCase(name: "bare offer", offers: [offer([])],
               expected: (.init(), [])),
    ServerCase(name: "client_max_window_bits without value, no server limit", offers: [offer([("client_max_window_bits", nil)])],
               expected: (.init(), [])),
    ServerCase(name: "server limits the client window", offers: [offer([("client_max_window_bits", nil)])],
               options: .init(clientMaxWindowBits: 10),
               expected: (.init(clientMaxWindowBits: 10), [.init("client_max_window_bits", "10")])),
    ServerCase(name: "client offers a client window value: echoed", offers: [offer([("client_max_window_bits", "12")])],
               expected: (.init(clientMaxWindowBits: 12), [.init("client_max_window_bits", "12")])),
    ServerCase(name: "client window: smaller of offer and option", offers: [offer([("client_max_window_bits", "12")])],
               options: .init(clientMaxWindowBits: 9),
               expected: (.init(clientMaxWindowBits: 9), [.init("client_max_window_bits", "9")])),
    ServerCase(name: "client window: offer smaller than option", offers: [offer([("client_max_window_bits", "8")])],
               options: .init(clientMaxWindowBits: 11),
               expected: (.init(clientMaxWindowBits: 8), [.init("client_max_window_bits", "8")])),
    ServerCase(name: "server_max_window_bits offered", offers: [offer([("server_max_window_bits", "10")])],
               expected: (.init(serverMaxWindowBits: 10), [.init("server_max_window_bits", "10")])),
    ServerCase(name: "server_max_window_bits: smaller of offer and option", offers: [offer([("server_max_window_bits", "12")])],
               options: .init(serverMaxWindowBits: 9),
               expected: (.init(serverMaxWindowBits: 9), [.init("server_max_window_bits", "9")])),
    ServerCase(name: "server_max_window_bits: offer smaller than option", offers: [offer([("server_max_window_bits", "8")])],
               options: .init(serverMaxWindowBits: 13),
               expected: (.init(serverMaxWindowBits: 8), [.init("server_max_window_bits", "8")])),
    ServerCase(name: "server_max_window_bits from options only", offers: [offer([])],
               options: .init(serverMaxWindowBits: 11),
               expected: (.init(serverMaxWindowBits: 11), [.init("server_max_window_bits", "11")])),
    ServerCase(name: "server_no_context_takeover requested by client", offers: [offer([("server_no_context_takeover", nil)])],
               expected: (.init(serverNoContextTakeover: true), [.init("server_no_context_takeover")])),
    ServerCase(name: "server_no_context_takeover from options", offers: [offer([])],
               options: .init(serverNoContextTakeover: true),
               expected: (.init(serverNoContextTakeover: true), [.init("server_no_context_takeover")])),
    ServerCase(name: "client_no_context_takeover hint is confirmed", offers: [offer([("client_no_context_takeover", nil)])],
               expected: (.init(clientNoContextTakeover: true), [.init("client_no_context_takeover")])),
    ServerCase(name: "client_no_context_takeover from options", offers: [offer([])],
               options: .init(clientNoContextTakeover: true),
               expected: (.init(clientNoContextTakeover: true), [.init("client_no_context_takeover")])),
    ServerCase(name: "everything",
               offers: [offer([("client_max_window_bits", nil), ("server_max_window_bits", "14"),
                               ("client_no_context_takeover", nil), ("server_no_context_takeover", nil)])],
               options: .init(serverMaxWindowBits: 12, clientMaxWindowBits: 13),
               expected: (.init(serverNoContextTakeover: true, clientNoContextTakeover: true,
                                serverMaxWindowBits: 12, clientMaxWindowBits: 13),
                          [.init("server_no_context_takeover"), .init("client_no_context_takeover"),
                           .init("server_max_window_bits", "12"), .init("client_max_window_bits", "13")])),
    ServerCase(name: "first acceptable offer wins",
               offers: [offer([("server_max_window_bits", "10")]), offer([("server_max_window_bits", "11")])],
               expected: (.init(serverMaxWindowBits: 10), [.init("server_max_window_bits", "10")])),
    ServerCase(name: "other extensions are ignored",
               offers: [ExtensionOffer(name: "x-webkit-deflate-frame"), offer([("server_max_window_bits", "9")])],
               expected: (.init(serverMaxWindowBits: 9), [.init("server_max_window_bits", "9")])),
    ServerCase(name: "extension name is case-insensitive",
               offers: [ExtensionOffer(name: "PerMessage-Deflate")],
               expected: (.init(), [])),
    ServerCase(name: "no permessage-deflate offer", offers: [ExtensionOffer(name: "foo")], expected: nil),
    ServerCase(name: "no offers at all", offers: [], expected: nil),
    ServerCase(name: "server wants to limit the client but client cannot be limited", offers: [offer([])],
               options: .init(clientMaxWindowBits: 10), expected: nil),
    ServerCase(name: "client window limit: falls back to the offer that allows it",
               offers: [offer([("server_no_context_takeover", nil)]), offer([("client_max_window_bits", nil)])],
               options: .init(clientMaxWindowBits: 10),
               expected: (.init(clientMaxWindowBits: 10), [.init("client_max_window_bits", "10")])),
]

/// Offers a server must decline; each is followed by a valid fallback offer.
private let invalidOfferParameters: [[(String, String?)]] = [
    [("server_no_context_takeover", nil), ("server_no_context_takeover", nil)],
    [("client_max_window_bits", nil), ("client_max_window_bits", "10")],
    [("server_max_window_bits", "10"), ("server_max_window_bits", "10")],
    [("unknown_parameter", nil)],
    [("x", "1")],
    [("server_max_window_bits", "7")],
    [("server_max_window_bits", "16")],
    [("server_max_window_bits", "abc")],
    [("server_max_window_bits", "08")],
    [("server_max_window_bits", "+9")],
    [("server_max_window_bits", "")],
    [("server_max_window_bits", " 9")],
    [("server_max_window_bits", nil)],
    [("client_max_window_bits", "7")],
    [("client_max_window_bits", "16")],
    [("client_max_window_bits", "abc")],
    [("client_max_window_bits", "010")],
    [("server_no_context_takeover", "")],
    [("server_no_context_takeover", "true")],
    [("client_no_context_takeover", "1")],
]

@Suite struct PerMessageDeflateServerNegotiationTests {
    @Test(arguments: serverCases)
    func negotiate(_ testCase: ServerCase) throws {
        let agreement = PerMessageDeflate.negotiate(offers: testCase.offers, options: testCase.options)
        guard let (parameters, responseParameters) = testCase.expected else {
            #expect(agreement == nil)
            return
        }
        let result = try #require(agreement)
        #expect(result.parameters == parameters)
        #expect(result.response == ExtensionOffer(name: "permessage-deflate", parameters: responseParameters))
        // What the server answers must be acceptable to a client that sent the offer.
        let accepted = try PerMessageDeflate.accept(response: result.response, offer: testCase.offers.first {
            $0.name.lowercased() == "permessage-deflate" && PerMessageDeflate.negotiate(offers: [$0], options: testCase.options) != nil
        }!)
        #expect(accepted == parameters)
    }

    @Test(arguments: invalidOfferParameters.indices)
    func invalidOfferIsDeclinedAndTheNextOneTaken(_ index: Int) throws {
        let invalid = offer(invalidOfferParameters[index])
        #expect(PerMessageDeflate.negotiate(offers: [invalid], options: .init()) == nil)
        let fallback = offer([("server_max_window_bits", "12")])
        let result = try #require(PerMessageDeflate.negotiate(offers: [invalid, fallback], options: .init()))
        #expect(result.parameters == .init(serverMaxWindowBits: 12))
    }
}

// MARK: - Client offer and response validation

@Suite struct PerMessageDeflateClientNegotiationTests {
    @Test func defaultOffer() {
        #expect(PerMessageDeflate.makeOffer(options: .init()) == offer([("client_max_window_bits", nil)]))
    }

    @Test func fullOffer() {
        let options = PerMessageDeflateOptions(serverNoContextTakeover: true, clientNoContextTakeover: true,
                                               serverMaxWindowBits: 10, clientMaxWindowBits: 11)
        #expect(PerMessageDeflate.makeOffer(options: options) == offer([
            ("server_no_context_takeover", nil), ("client_no_context_takeover", nil),
            ("server_max_window_bits", "10"), ("client_max_window_bits", "11"),
        ]))
    }

    @Test func acceptsBareResponse() throws {
        #expect(try PerMessageDeflate.accept(response: offer([]), options: .init()) == .init())
    }

    @Test func acceptsServerLimits() throws {
        let response = offer([("server_no_context_takeover", nil), ("client_no_context_takeover", nil),
                              ("server_max_window_bits", "9"), ("client_max_window_bits", "8")])
        #expect(try PerMessageDeflate.accept(response: response, options: .init()) ==
            .init(serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 8))
    }

    @Test func clientOptionsApplyWithoutServerConfirmation() throws {
        // Our own no-context-takeover and window promise hold even if the server is silent.
        let options = PerMessageDeflateOptions(clientNoContextTakeover: true, clientMaxWindowBits: 12)
        #expect(try PerMessageDeflate.accept(response: offer([]), options: options) ==
            .init(clientNoContextTakeover: true, clientMaxWindowBits: 12))
    }

    @Test func acceptsSmallerServerWindowThanAsked() throws {
        let options = PerMessageDeflateOptions(serverMaxWindowBits: 12)
        #expect(try PerMessageDeflate.accept(response: offer([("server_max_window_bits", "10")]), options: options) ==
            .init(serverMaxWindowBits: 10))
    }

    @Test func acceptsSmallerClientWindowThanOffered() throws {
        let options = PerMessageDeflateOptions(clientMaxWindowBits: 12)
        #expect(try PerMessageDeflate.accept(response: offer([("client_max_window_bits", "12")]), options: options) ==
            .init(clientMaxWindowBits: 12))
        #expect(try PerMessageDeflate.accept(response: offer([("client_max_window_bits", "9")]), options: options) ==
            .init(clientMaxWindowBits: 9))
    }

    struct Rejection: Sendable, CustomTestStringConvertible {
        var response: ExtensionOffer
        var options = PerMessageDeflateOptions()
        var offer: ExtensionOffer?
        var reasonContains: String
        var testDescription: String { reasonContains }
    }

    static let rejections: [Rejection] = [
        Rejection(response: ExtensionOffer(name: "x-deflate"), reasonContains: "extension"),
        Rejection(response: offer([("foo", nil)]), reasonContains: "unknown parameter foo"),
        Rejection(response: offer([("server_max_window_bits", "10"), ("server_max_window_bits", "10")]),
                  reasonContains: "duplicate parameter server_max_window_bits"),
        Rejection(response: offer([("server_max_window_bits", "16")]), reasonContains: "server_max_window_bits must be 8...15"),
        Rejection(response: offer([("server_max_window_bits", nil)]), reasonContains: "server_max_window_bits must be 8...15"),
        Rejection(response: offer([("client_max_window_bits", "7")]), reasonContains: "client_max_window_bits must be 8...15"),
        Rejection(response: offer([("client_max_window_bits", nil)]), reasonContains: "client_max_window_bits must have a value"),
        Rejection(response: offer([("server_no_context_takeover", "x")]), reasonContains: "server_no_context_takeover must not have a value"),
        Rejection(response: offer([("client_no_context_takeover", "")]), reasonContains: "client_no_context_takeover must not have a value"),
        Rejection(response: offer([]), options: .init(serverNoContextTakeover: true),
                  reasonContains: "server_no_context_takeover was offered but not confirmed"),
        Rejection(response: offer([]), options: .init(serverMaxWindowBits: 10),
                  reasonContains: "server_max_window_bits was offered but not confirmed"),
        Rejection(response: offer([("server_max_window_bits", "11")]), options: .init(serverMaxWindowBits: 10),
                  reasonContains: "server_max_window_bits=11 exceeds offered 10"),
        Rejection(response: offer([("client_max_window_bits", "13")]), options: .init(clientMaxWindowBits: 12),
                  reasonContains: "client_max_window_bits=13 exceeds offered 12"),
        Rejection(response: offer([("client_max_window_bits", "13")]), offer: offer([]),
                  reasonContains: "client_max_window_bits was not offered"),
    ]

    @Test(arguments: rejections)
    func rejects(_ rejection: Rejection) {
        do {
            if let sent = rejection.offer {
                _ = try PerMessageDeflate.accept(response: rejection.response, offer: sent)
            } else {
                _ = try PerMessageDeflate.accept(response: rejection.response, options: rejection.options)
            }
            Issue.record("accepted an invalid response")
        } catch {
            #expect(error.closeCode == .protocolError)
            #expect(error.reason.contains(rejection.reasonContains), "\(error.reason)")
        }
    }

    @Test func optionValidation() {
        #expect(throws: Never.self) { try PerMessageDeflateOptions().validate() }
        let bad: [(PerMessageDeflateOptions, String)] = [
            (.init(serverMaxWindowBits: 7), "serverMaxWindowBits"),
            (.init(clientMaxWindowBits: 16), "clientMaxWindowBits"),
            (.init(level: 10), "level"),
            (.init(memLevel: 0), "memLevel"),
            (.init(threshold: -1), "threshold"),
            (.init(concurrencyLimit: 0), "concurrencyLimit"),
        ]
        for (options, field) in bad {
            do {
                try options.validate()
                Issue.record("\(field) accepted")
            } catch {
                #expect(error.description.hasPrefix(field))
            }
        }
    }
}

// MARK: - Engine

@Suite struct PerMessageDeflateEngineTests {
    static let sizes = [0, 1, 100, 70_000]

    /// Sizes 0, 1, 100, 70 000 and 1 MiB, random-ish and repetitive, generated once.
    static let messages: [[UInt8]] =
        sizes.flatMap { [noise($0, seed: UInt64($0)), text($0, seed: UInt64($0) &+ 1)] }
            + [noise(1 << 20), text(1 << 20), [UInt8](repeating: 0x61, count: 1 << 20)]

    @Test(arguments: 8...15, [false, true])
    func roundTripBothDirections(windowBits: Int, noContextTakeover: Bool) throws {
        let parameters = PerMessageDeflateParameters(
            serverNoContextTakeover: noContextTakeover, clientNoContextTakeover: noContextTakeover,
            serverMaxWindowBits: windowBits, clientMaxWindowBits: windowBits)
        let (server, client) = pair(parameters)
        for (sender, receiver) in [(server, client), (client, server)] {
            for message in Self.messages {
                let compressed = try sender.compress(buffer(message), allocator: allocator)
                #expect(try decompressWhole(receiver, compressed) == message)
            }
        }
    }

    @Test(arguments: [false, true])
    func asymmetricParameters(clientNoContextTakeover: Bool) throws {
        let parameters = PerMessageDeflateParameters(
            serverNoContextTakeover: !clientNoContextTakeover, clientNoContextTakeover: clientNoContextTakeover,
            serverMaxWindowBits: 9, clientMaxWindowBits: 14)
        let (server, client) = pair(parameters)
        #expect(server.compressorWindowBits == 9 && server.decompressorWindowBits == 14)
        #expect(client.compressorWindowBits == 14 && client.decompressorWindowBits == 9)
        #expect(server.compressorNoContextTakeover == !clientNoContextTakeover)
        #expect(client.compressorNoContextTakeover == clientNoContextTakeover)
        for round in 0..<6 {
            let message = text(5_000 + round * 3_000, seed: UInt64(round % 2))
            #expect(try decompressWhole(client, server.compress(buffer(message), allocator: allocator)) == message)
            #expect(try decompressWhole(server, client.compress(buffer(message), allocator: allocator)) == message)
        }
    }

    @Test func contextTakeoverReallyShrinksRepeatedMessages() throws {
        let message = buffer(noise(2_000))
        let keeping = PerMessageDeflate(role: .server, parameters: .init())
        let resetting = PerMessageDeflate(role: .server, parameters: .init(serverNoContextTakeover: true))
        _ = try keeping.compress(message, allocator: allocator)
        _ = try resetting.compress(message, allocator: allocator)
        #expect(try keeping.compress(message, allocator: allocator).readableBytes < 60)
        #expect(try resetting.compress(message, allocator: allocator).readableBytes > 1_900)
    }

    @Test func fragmentedDecompressionMatchesWhole() throws {
        // Without context takeover each message can be re-fed with different cut points.
        let parameters = PerMessageDeflateParameters(serverNoContextTakeover: true)
        let sender = PerMessageDeflate(role: .server, parameters: parameters)
        let receiver = PerMessageDeflate(role: .client, parameters: parameters)
        for message in [text(70_000), noise(70_000), text(300), [UInt8]("Hello".utf8)] {
            let compressed = bytes(try sender.compress(buffer(message), allocator: allocator))
            let n = compressed.count
            for cuts in [[1], [n / 2], [n - 1], [1, 2, 3, n - 2], Array(stride(from: 7, to: n, by: max(1, n / 13))), Array(1..<min(n, 40))] {
                let points = [0] + cuts.filter { $0 > 0 && $0 < n } + [n]
                var output = allocator.buffer(capacity: 0)
                for index in 0..<(points.count - 1) {
                    try receiver.decompress(buffer(Array(compressed[points[index]..<points[index + 1]])),
                                            isFinal: index == points.count - 2, into: &output, limit: 1 << 20)
                }
                #expect(bytes(output) == message)
            }
        }
    }

    @Test func fragmentedDecompressionWithContextTakeover() throws {
        // Every message sent once, received in pieces, windows in step.
        let sender = PerMessageDeflate(role: .client, parameters: .init())
        let receiver = PerMessageDeflate(role: .server, parameters: .init())
        for (round, message) in [text(70_000), noise(9_000), text(70_000, seed: 3), text(100)].enumerated() {
            let compressed = bytes(try sender.compress(buffer(message), allocator: allocator))
            let step = max(1, compressed.count / (round * 5 + 2))
            var output = allocator.buffer(capacity: 0)
            var start = 0
            while start < compressed.count {
                let end = min(compressed.count, start + step)
                try receiver.decompress(buffer(Array(compressed[start..<end])), isFinal: end == compressed.count,
                                        into: &output, limit: 1 << 20)
                start = end
            }
            #expect(bytes(output) == message)
        }
    }

    @Test(arguments: [false, true])
    func fragmentedCompression(noContextTakeover: Bool) throws {
        let parameters = PerMessageDeflateParameters(clientNoContextTakeover: noContextTakeover)
        let sender = PerMessageDeflate(role: .client, parameters: parameters)
        let receiver = PerMessageDeflate(role: .server, parameters: parameters)
        for message in [text(50_000), noise(3_000), []] {
            let pieces = [0, min(1, message.count), message.count / 3, message.count / 3, message.count]
            var received = allocator.buffer(capacity: 0)
            for index in 0..<(pieces.count - 1) {
                let isFinal = index == pieces.count - 2
                var frame = allocator.buffer(capacity: 0)
                try sender.compress(buffer(Array(message[pieces[index]..<pieces[index + 1]])),
                                    isFinal: isFinal, into: &frame)
                try receiver.decompress(frame, isFinal: isFinal, into: &received, limit: 1 << 20)
            }
            #expect(bytes(received) == message)
        }
    }

    @Test func compressAppendsAfterExistingBytes() throws {
        let engine = PerMessageDeflate(role: .server, parameters: .init())
        var output = buffer([0xaa, 0xbb])
        try engine.compress(buffer("Hello"), isFinal: true, into: &output)
        #expect(bytes(output) == [0xaa, 0xbb, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
    }

    @Test(arguments: [false, true])
    func windowBits8OutputDecodesWithAStrict256ByteWindow(noContextTakeover: Bool) throws {
        // Our compressor uses zlib's -9 for 8; check every message inflates with a real -8
        // inflater (which rejects distances beyond 256 bytes).
        let engine = PerMessageDeflate(role: .server, parameters: .init(serverNoContextTakeover: noContextTakeover, serverMaxWindowBits: 8))
        let strict = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        strict.initialize(to: z_stream())
        #expect(inflateInit2_(strict, -8, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK)
        defer { inflateEnd(strict); strict.deallocate() }

        // Repeats 300...500 bytes apart tempt a 512-byte window into distances > 256.
        let unit = noise(400, seed: 11)
        var messages = [unit + unit + unit, text(20_000), noise(600) + unit + noise(100) + unit]
        messages += (0..<20).map { text(1_000 + $0 * 37, seed: UInt64($0)) }
        for message in messages {
            let compressed = bytes(try engine.compress(buffer(message), allocator: allocator)) + [0x00, 0x00, 0xff, 0xff]
            var output = [UInt8](repeating: 0, count: message.count + 64)
            var input = compressed
            let status = input.withUnsafeMutableBufferPointer { inBuffer in
                output.withUnsafeMutableBufferPointer { outBuffer in
                    strict.pointee.next_in = inBuffer.baseAddress
                    strict.pointee.avail_in = UInt32(inBuffer.count)
                    strict.pointee.next_out = outBuffer.baseAddress
                    strict.pointee.avail_out = UInt32(outBuffer.count)
                    return inflate(strict, Z_SYNC_FLUSH)
                }
            }
            #expect(status == Z_OK)
            #expect(Array(output.prefix(message.count + 64 - Int(strict.pointee.avail_out))) == message)
            if noContextTakeover { inflateReset(strict) }
        }
    }

    @Test func limitIsExact() throws {
        let message = text(10_000)
        let sender = PerMessageDeflate(role: .server, parameters: .init(serverNoContextTakeover: true))
        let compressed = try sender.compress(buffer(message), allocator: allocator)
        #expect(try decompressWhole(PerMessageDeflate(role: .client, parameters: .init()), compressed, limit: 10_000) == message)
        expectError(.messageTooBig) {
            _ = try decompressWhole(PerMessageDeflate(role: .client, parameters: .init()), compressed, limit: 9_999)
        }
        expectError(.messageTooBig) {
            _ = try decompressWhole(PerMessageDeflate(role: .client, parameters: .init()), compressed, limit: 0)
        }
        #expect(try decompressWhole(PerMessageDeflate(role: .client, parameters: .init()), buffer([0x00]), limit: 0) == [])
    }

    @Test func limitCountsTheWholeMessageAcrossFragments() throws {
        let message = text(10_000)
        let sender = PerMessageDeflate(role: .server, parameters: .init())
        let compressed = bytes(try sender.compress(buffer(message), allocator: allocator))
        let receiver = PerMessageDeflate(role: .client, parameters: .init())
        expectError(.messageTooBig) {
            for start in stride(from: 0, to: compressed.count, by: 100) {
                // A fresh output per fragment: the engine still counts the message's total.
                var output = allocator.buffer(capacity: 0)
                let end = min(compressed.count, start + 100)
                try receiver.decompress(buffer(Array(compressed[start..<end])), isFinal: end == compressed.count,
                                        into: &output, limit: 5_000)
            }
        }
    }

    @Test func decompressionBombStopsAtTheLimit() throws {
        // 100 MiB of zeros, compressed as one message fed in 1 MiB pieces.
        let oneMiB = ByteBuffer(repeating: 0, count: 1 << 20)
        let sender = PerMessageDeflate(role: .client, parameters: .init())
        var bomb = allocator.buffer(capacity: 0)
        for index in 0..<100 {
            try sender.compress(oneMiB, isFinal: index == 99, into: &bomb)
        }
        #expect(bomb.readableBytes < 200_000)

        let receiver = PerMessageDeflate(role: .server, parameters: .init())
        let limit = 1 << 20
        var output = allocator.buffer(capacity: 0)
        do {
            try receiver.decompress(bomb, isFinal: true, into: &output, limit: limit)
            Issue.record("bomb accepted")
        } catch {
            #expect(error.closeCode == .messageTooBig)
        }
        #expect(output.readableBytes <= limit)
        #expect(output.capacity <= limit + 64 * 1024)
    }

    @Test func bombInManyFragments() throws {
        let sender = PerMessageDeflate(role: .client, parameters: .init())
        let bomb = bytes(try sender.compress(ByteBuffer(repeating: 0x20, count: 8 << 20), allocator: allocator))
        let receiver = PerMessageDeflate(role: .server, parameters: .init())
        var output = allocator.buffer(capacity: 0)
        var thrown: WebSocketError?
        var start = 0
        while start < bomb.count, thrown == nil {
            let end = min(bomb.count, start + 512)
            do {
                try receiver.decompress(buffer(Array(bomb[start..<end])), isFinal: end == bomb.count,
                                        into: &output, limit: 300_000)
            } catch {
                thrown = error
            }
            start = end
        }
        #expect(thrown?.closeCode == .messageTooBig)
        #expect(start < bomb.count)  // failed early, long before the end of the input
        #expect(output.capacity <= 512 * 1024)
    }

    @Test(arguments: [
        [UInt8]([0xff, 0xff, 0xff]),                        // BTYPE 11 (reserved)
        [0x00, 0x05, 0x00, 0x00, 0x00, 0x48],               // stored block with NLEN != ~LEN
        [0xf2, 0x00, 0x11, 0x00, 0x00],                     // back reference with an empty window
        [0xfd, 0xff, 0xff],                                 // dynamic block, HLIT 288 > 286
    ])
    func corruptDataIs1007(payload: [UInt8]) {
        let engine = PerMessageDeflate(role: .server, parameters: .init())
        expectError(.invalidFramePayloadData) { _ = try decompressWhole(engine, buffer(payload)) }
    }

    @Test func truncatedMessageWithContextKeptIs1007() throws {
        // "Hello" cut inside the block: the tail becomes block data, the window would be wrong.
        let engine = PerMessageDeflate(role: .server, parameters: .init())
        expectError(.invalidFramePayloadData) { _ = try decompressWhole(engine, buffer([0xf2, 0x48, 0xcd])) }
        let emptyPayload = PerMessageDeflate(role: .server, parameters: .init())
        expectError(.invalidFramePayloadData) { _ = try decompressWhole(emptyPayload, buffer([])) }
    }

    @Test func unstrippedTailIsToleratedWithoutContextTakeover() throws {
        // A sender that forgets to strip 00 00 ff ff: harmless when the context is reset anyway.
        let engine = PerMessageDeflate(role: .server, parameters: .init(clientNoContextTakeover: true))
        let payload: [UInt8] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff]
        #expect(try decompressWhole(engine, buffer(payload)) == Array("Hello".utf8))
        #expect(try decompressWhole(engine, buffer(payload)) == Array("Hello".utf8))
    }

    @Test func threshold() {
        let engine = PerMessageDeflate(role: .server, parameters: .init())
        #expect(!engine.shouldCompress(byteCount: 1023))
        #expect(engine.shouldCompress(byteCount: 1024))
        let always = PerMessageDeflate(role: .server, parameters: .init(), options: .init(threshold: 0))
        #expect(always.shouldCompress(byteCount: 0))
    }

    @Test(arguments: [Int32(-1), 0, 1, 9], [Int32(1), 9])
    func levelsAndMemLevels(level: Int32, memLevel: Int32) throws {
        let options = PerMessageDeflateOptions(level: level, memLevel: memLevel)
        let (server, client) = pair(.init(), options)
        for message in [text(70_000), noise(5_000), []] {
            #expect(try decompressWhole(client, server.compress(buffer(message), allocator: allocator)) == message)
        }
    }
}
