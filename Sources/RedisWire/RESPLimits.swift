/// Bounds on what the decoder accepts, so a broken or hostile peer cannot make us buffer
/// without end or recurse without end.
public struct RESPLimits: Sendable, Equatable {
    /// Longest bulk, verbatim or blob-error string. Default 64 MiB, far above any message the
    /// broker stores (its own message limit is checked before anything reaches Redis).
    public var maxBulkLength: Int = 64 << 20
    /// Most elements in one array, set, map (pairs) or push. Default 1,048,576.
    public var maxAggregateCount: Int = 1 << 20
    /// Deepest nesting of aggregates. Default 32 (stream replies nest 4 deep).
    public var maxDepth: Int = 32
    /// Longest header or simple line without its CRLF. Default 64 KiB.
    public var maxLineLength: Int = 64 << 10

    public init() {}
}
