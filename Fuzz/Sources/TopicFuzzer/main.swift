// libFuzzer entry point for topic names and subscription patterns (`Topic`,
// `TopicPattern`). The input is cut at its first two newlines into P, Q and T, each parsed
// as a topic and as a pattern; so is the whole input.
//
// Checks: validity is exactly the documented grammar (a second, plainer implementation
// here); a valid name is the input, re-joins from its segments or tokens and parses again
// to the same value; a topic is a concrete pattern that matches itself; `matches` agrees
// with a plain recursive matcher; every pattern covers itself; P covers Q and Q matches T
// imply P matches T; for a concrete Q, P covers Q exactly when P matches Q's topic; every
// error message is one line.
import FuzzerSupport
@_spi(Fuzzing) import Switchboard

runFuzzer(fuzz)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    _ = parse(bytes)
    let pieces = parts(of: bytes, separator: UInt8(ascii: "\n"), maxParts: 3).map(parse)
    let (p, q, t) = (pieces[0].pattern, pieces[1].pattern, pieces[2].topic)
    if let p, let q {
        if let t, p.covers(q), q.matches(t) { require(p.matches(t), "\(p) covers \(q) and \(q) matches \(t), but \(p) does not match it") }
        if q.isConcrete, let topic = try? Topic(q.name) {
            require(p.covers(q) == p.matches(topic), "\(p) covers concrete \(q) unlike it matches it")
        }
    }
    if let p, let t { require(p.matches(t) == referenceMatches(p.name, t.name), "\(p) matches \(t) unlike the reference") }
    return 0
}

/// `bytes` as a topic and as a pattern, each checked on its own.
func parse(_ bytes: [UInt8]) -> (topic: Topic?, pattern: TopicPattern?) {
    let topic: Topic?
    switch bytes.withUnsafeBytes({ raw in Result { () throws(TopicError) in try Topic(bytes: raw) } }) {
    case .success(let value): topic = value
    case .failure(let error):
        checkOneLine(error.message, "topic error")
        topic = nil
    }
    let pattern: TopicPattern?
    switch bytes.withUnsafeBytes({ raw in Result { () throws(TopicError) in try TopicPattern(bytes: raw) } }) {
    case .success(let value): pattern = value
    case .failure(let error):
        checkOneLine(error.message, "pattern error")
        pattern = nil
    }
    require((topic != nil) == referenceValid(bytes, wildcards: false), "topic validity differs from the grammar")
    require((pattern != nil) == referenceValid(bytes, wildcards: true), "pattern validity differs from the grammar")
    if let topic {
        require(Array(topic.name.utf8) == bytes, "topic name is not the input")
        require(topic.segments.joined(separator: ".") == topic.name, "segments do not re-join to the name")
        require((try? Topic(topic.name)) == topic, "topic does not parse again")
        guard let pattern else { fatalError("a topic is not a pattern") }
        require(pattern.isConcrete && pattern.matches(topic) && pattern.covers(pattern), "a topic's pattern is not itself")
        require(TopicPattern(topic) == pattern && TopicPattern(topic).tokens == pattern.tokens, "pattern of a topic differs")
    }
    if let pattern {
        require(Array(pattern.name.utf8) == bytes, "pattern name is not the input")
        let rejoined = pattern.tokens.map { token in
            switch token {
            case .literal(let text): String(text)
            case .single: "*"
            case .rest: ">"
            }
        }.joined(separator: ".")
        require(rejoined == pattern.name, "tokens do not re-join to the name")
        require(pattern.covers(pattern), "a pattern does not cover itself")
        require(pattern.isConcrete == (topic != nil), "isConcrete differs from being a topic")
    }
    return (topic, pattern)
}

/// The grammar of docs/protocol.md, plainly: 1–255 bytes, 1–32 dot-separated non-empty
/// segments of `[A-Za-z0-9_\-:]`; with wildcards a segment may also be `*`, or `>` when last.
func referenceValid(_ bytes: [UInt8], wildcards: Bool) -> Bool {
    guard !bytes.isEmpty, bytes.count <= 255 else { return false }
    let segments = bytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    guard segments.count <= 32 else { return false }
    for (index, segment) in segments.enumerated() {
        if wildcards && Array(segment) == Array("*".utf8) { continue }
        if wildcards && Array(segment) == Array(">".utf8) && index == segments.count - 1 { continue }
        guard !segment.isEmpty, segment.allSatisfy(isSegmentByte) else { return false }
    }
    return true
}

func isSegmentByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
        UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: ":"):
        true
    default:
        false
    }
}

/// Whether `pattern` matches `topic`, by recursion over their dot-separated parts.
func referenceMatches(_ pattern: String, _ topic: String) -> Bool {
    func match(_ tokens: ArraySlice<Substring>, _ segments: ArraySlice<Substring>) -> Bool {
        guard let token = tokens.first else { return segments.isEmpty }
        if token == ">" { return !segments.isEmpty }
        guard let segment = segments.first, token == "*" || token == segment else { return false }
        return match(tokens.dropFirst(), segments.dropFirst())
    }
    return match(
        ArraySlice(pattern.split(separator: ".", omittingEmptySubsequences: false)),
        ArraySlice(topic.split(separator: ".", omittingEmptySubsequences: false)))
}
