import WebSocketCore

/// permessage-deflate (RFC 7692) for the broker's clients: the `deflate*` keys.
///
/// The broker always answers with `server_no_context_takeover`, so that each message is
/// compressed on its own: one compressed frame, made once per published message, serves
/// every subscriber that agreed to deflate (see `SharedCompression`).
public struct DeflateConfiguration: Sendable, Hashable {
    /// Whether permessage-deflate is offered to clients that ask for it. Default false, as in
    /// `ws`: a client that compresses what it sends costs an inflate context (about 44 KB)
    /// for as long as it stays, and small messages gain nothing; turn it on for large
    /// text messages to browsers.
    public var enabled = false
    /// Messages (frame payloads) with fewer bytes than this go uncompressed. Default 1024, as `ws`.
    public var threshold = 1024
    /// zlib level, -1 (zlib's default, 6) to 9. Default -1.
    public var level: Int32 = -1
    /// zlib memLevel 1...9. Default 8.
    public var memLevel: Int32 = 8
    /// The LZ77 window the broker compresses with, 9...15. Default 15. A client that asks
    /// for a smaller `server_max_window_bits` gets its messages uncompressed.
    public var windowBits = 15

    public init() {}

    /// What the WebSocket server negotiates; nil when off.
    var serverOptions: PerMessageDeflateOptions? {
        guard enabled else { return nil }
        return PerMessageDeflateOptions(
            serverNoContextTakeover: true, serverMaxWindowBits: windowBits == 15 ? nil : windowBits,
            level: level, memLevel: memLevel, threshold: threshold)
    }

    static let keys: [(key: String, environment: String)] = [
        ("deflate", "SWITCHBOARD_DEFLATE"), ("deflate_threshold", "SWITCHBOARD_DEFLATE_THRESHOLD"),
        ("deflate_level", "SWITCHBOARD_DEFLATE_LEVEL"), ("deflate_mem_level", "SWITCHBOARD_DEFLATE_MEM_LEVEL"),
        ("deflate_window_bits", "SWITCHBOARD_DEFLATE_WINDOW_BITS"),
    ]

    /// Sets one `deflate*` key; returns the problem with `text`, if any.
    mutating func set(_ key: String, _ text: String) -> String? {
        func integer(in range: ClosedRange<Int>) -> Int? {
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(value) else { return nil }
            return value
        }
        func notInteger(_ range: ClosedRange<Int>) -> String {
            "must be an integer from \(range.lowerBound) to \(range.upperBound), not \(text.debugDescription)"
        }
        switch key {
        case "deflate":
            switch text {
            case "on", "true": enabled = true
            case "off", "false": enabled = false
            default: return "must be on or off, not \(text.debugDescription)"
            }
        case "deflate_threshold":
            guard let value = integer(in: 0...(1 << 30)) else { return notInteger(0...(1 << 30)) }
            threshold = value
        case "deflate_level":
            guard let value = integer(in: -1...9) else { return notInteger(-1...9) }
            level = Int32(value)
        case "deflate_mem_level":
            guard let value = integer(in: 1...9) else { return notInteger(1...9) }
            memLevel = Int32(value)
        case "deflate_window_bits":
            guard let value = integer(in: 9...15) else { return notInteger(9...15) }
            windowBits = value
        default:
            return "unknown key"
        }
        return nil
    }
}
