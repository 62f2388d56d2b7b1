import NIOCore

/// The client → broker half of wire protocol v1 (docs/protocol.md): the request parsers for
/// text (JSON) and binary frames. `MessageEncoder` writes the other half.
///
/// Invariants:
/// - Parsing never decodes the publish payload: `Publish.payload` is a slice of the
///   incoming frame's buffer (no copy), holding exactly the bytes of the `data` value
///   (JSON) or of the payload after the header (binary).
/// - The whole text frame is validated as JSON (a frame with a valid envelope and broken
///   JSON elsewhere is rejected), so forwarded `data` is always a complete JSON value.
/// - A request that is valid JSON but wrong in shape, topic or size throws a
///   `ProtocolError` carrying the request's `id` when one was read, so the error reply can
///   name it; broken JSON throws `bad_json` with no id.
@_spi(Fuzzing) public enum RequestDecoder {
    /// Limits applied while parsing a request.
    @_spi(Fuzzing) public struct Limits: Sendable, Hashable {
        /// Largest publish payload (`data` bytes or binary payload); past it, `too_large`.
        @_spi(Fuzzing) public var maxPayloadBytes: Int
        /// Largest request id (its raw JSON token, or its bytes in a binary frame).
        @_spi(Fuzzing) public var maxIDBytes: Int

        @_spi(Fuzzing) public init(maxPayloadBytes: Int = 1 << 20, maxIDBytes: Int = 128) {
            self.maxPayloadBytes = maxPayloadBytes
            self.maxIDBytes = maxIDBytes
        }
    }

    // MARK: Parsing

    /// Parses one text frame (already UTF-8 validated by the receiver).
    @_spi(Fuzzing) public static func parse(text frame: ByteBuffer, limits: Limits = Limits()) throws(ProtocolError) -> ClientRequest {
        let result: Result<ClientRequest, ProtocolError> = frame.withUnsafeReadableBytes { bytes in
            do throws(ProtocolError) {
                return .success(try parseText(bytes, frame: frame, limits: limits))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Parses one binary frame (a binary publish).
    @_spi(Fuzzing) public static func parse(binary frame: ByteBuffer, limits: Limits = Limits()) throws(ProtocolError) -> ClientRequest {
        var buffer = frame
        guard let first = buffer.readInteger(as: UInt8.self) else {
            throw ProtocolError(.badRequest, "empty binary frame")
        }
        guard first >> 4 == WireProtocol.binaryVersion else {
            throw ProtocolError(.badRequest, "binary frame version \(first >> 4); this broker speaks 1")
        }
        guard first == WireProtocol.binaryPublish else {
            throw ProtocolError(.unknownOp, "unknown binary op 0x\(String(first, radix: 16)); only 0x11 (publish) is sent by clients")
        }
        guard let topicLength = buffer.readInteger(as: UInt8.self),
            let topicBytes = buffer.readSlice(length: Int(topicLength)),
            let idLength = buffer.readInteger(as: UInt8.self),
            let idBytes = buffer.readSlice(length: Int(idLength))
        else {
            throw ProtocolError(.badRequest, "binary publish header is truncated")
        }
        var id: RequestID?
        if idLength > 0 {
            guard Int(idLength) <= limits.maxIDBytes else {
                throw ProtocolError(.badRequest, "id is longer than \(limits.maxIDBytes) bytes")
            }
            guard let string = String(validating: idBytes.readableBytesView, as: UTF8.self) else {
                throw ProtocolError(.badRequest, "binary publish id is not valid UTF-8")
            }
            id = RequestID(string: string)
        }
        let topic: Topic
        do {
            topic = try topicBytes.withUnsafeReadableBytes { (bytes) throws(TopicError) in try Topic(bytes: bytes) }
        } catch {
            throw ProtocolError(.badTopic, error.message, id: id)
        }
        guard buffer.readableBytes <= limits.maxPayloadBytes else {
            throw ProtocolError(.tooLarge, "payload is \(buffer.readableBytes) bytes; at most \(limits.maxPayloadBytes)", id: id)
        }
        return .publish(Publish(id: id, topic: topic, payload: buffer, format: .binary))
    }

    private static func parseText(
        _ bytes: UnsafeRawBufferPointer, frame: ByteBuffer, limits: Limits
    ) throws(ProtocolError) -> ClientRequest {
        var scanner = JSONScanner(bytes)
        var op: Range<Int>?
        var opEscaped = false
        var topic: (range: Range<Int>, escaped: Bool)?
        var idRange: Range<Int>?
        var since: Range<Int>?
        var sinceTime: Range<Int>?
        var epoch: Range<Int>?
        var last: Range<Int>?
        var data: Range<Int>?
        var topicNotString = false
        var opNotString = false
        var duplicate: String?
        var notObject = false

        do throws(JSONSyntaxError) {
            scanner.skipWhitespace()
            if scanner.peek() != UInt8(ascii: "{") {
                if scanner.isAtEnd { throw scanner.error("empty frame") }
                // Valid JSON that is not an object is a shape error, not a syntax error.
                _ = try scanner.skipValue()
                try scanner.expectEnd()
                notObject = true
            } else {
                scanner.position += 1
                scanner.skipWhitespace()
                if scanner.peek() == UInt8(ascii: "}") {
                    scanner.position += 1
                } else {
                    members: while true {
                        scanner.skipWhitespace()
                        let (keyRange, keyEscaped) = try scanner.scanString()
                        try scanner.expect(UInt8(ascii: ":"), "':' after a member name")
                        scanner.skipWhitespace()
                        let valueStart = scanner.position
                        let first = scanner.peek()
                        let value = try scanner.skipValue()
                        let isString = first == UInt8(ascii: "\"")
                        let key = Key(scanner: scanner, range: keyRange, escaped: keyEscaped)
                        func set(_ slot: inout Range<Int>?, _ name: String) {
                            if slot != nil { duplicate = name }
                            slot = value
                        }
                        switch key {
                        case .op:
                            set(&op, "op")
                            opNotString = !isString
                            opEscaped = isString && bytes[valueStart + 1..<value.upperBound - 1].contains(UInt8(ascii: "\\"))
                        case .topic:
                            if topic != nil { duplicate = "topic" }
                            topicNotString = !isString
                            topic = (value, isString && bytes[value].contains(UInt8(ascii: "\\")))
                        case .id: set(&idRange, "id")
                        case .since: set(&since, "since")
                        case .sinceTime: set(&sinceTime, "since_time")
                        case .epoch: set(&epoch, "epoch")
                        case .last: set(&last, "last")
                        case .data: set(&data, "data")
                        case .other: break
                        }
                        scanner.skipWhitespace()
                        guard let next = scanner.peek() else { throw scanner.error("unexpected end inside the request object") }
                        scanner.position += 1
                        if next == UInt8(ascii: ",") { continue members }
                        if next == UInt8(ascii: "}") { break members }
                        scanner.position -= 1
                        throw scanner.error("expected ',' or '}'")
                    }
                }
                try scanner.expectEnd()
            }
        } catch {
            throw ProtocolError(.badJSON, error.description)
        }
        if notObject { throw ProtocolError(.badRequest, "a request is a JSON object") }

        // The JSON is valid: from here on, errors name the request's id.
        var id: RequestID?
        if let idRange {
            let first = bytes[idRange.lowerBound]
            guard first == UInt8(ascii: "\"") || first == UInt8(ascii: "-") || (first >= 0x30 && first <= 0x39) else {
                throw ProtocolError(.badRequest, "id must be a string or a number")
            }
            guard idRange.count <= limits.maxIDBytes else {
                throw ProtocolError(.badRequest, "id is longer than \(limits.maxIDBytes) bytes")
            }
            id = RequestID(json: try slice(frame, idRange))
        }
        if let duplicate {
            throw ProtocolError(.badRequest, "member \"\(duplicate)\" appears more than once", id: id)
        }
        guard let op else { throw ProtocolError(.badRequest, "missing \"op\"", id: id) }
        guard !opNotString else { throw ProtocolError(.badRequest, "\"op\" must be a string", id: id) }
        let opContents = op.lowerBound + 1..<op.upperBound - 1
        // Compared in place; only an op written with escapes is decoded (rare path).
        let kind: Op
        if !opEscaped, scanner.equals(opContents, "pub") {
            kind = .pub
        } else if !opEscaped, scanner.equals(opContents, "sub") {
            kind = .sub
        } else if !opEscaped, scanner.equals(opContents, "unsub") {
            kind = .unsub
        } else {
            let opName = opEscaped ? scanner.decodeString(opContents) : Array(bytes[opContents])
            switch opName {
            case Array("pub".utf8): kind = .pub
            case Array("sub".utf8): kind = .sub
            case Array("unsub".utf8): kind = .unsub
            default:
                let shown = String(decoding: opName.prefix(32), as: UTF8.self)
                throw ProtocolError(.unknownOp, "unknown op \(shown.debugDescription); expected sub, unsub or pub", id: id)
            }
        }

        guard let topic else { throw ProtocolError(.badRequest, "missing \"topic\"", id: id) }
        guard !topicNotString else { throw ProtocolError(.badRequest, "\"topic\" must be a string", id: id) }
        let topicContents = topic.range.lowerBound + 1..<topic.range.upperBound - 1
        func withTopicBytes<R>(_ body: (UnsafeRawBufferPointer) throws(TopicError) -> R) throws(ProtocolError) -> R {
            do throws(TopicError) {
                if topic.escaped {
                    // No valid topic byte needs escaping, but an escaped one is still valid JSON.
                    let decoded = scanner.decodeString(topicContents)
                    let result: Result<R, TopicError> = decoded.withUnsafeBytes { raw in
                        do throws(TopicError) { return .success(try body(raw)) } catch { return .failure(error) }
                    }
                    return try result.get()
                }
                return try body(UnsafeRawBufferPointer(rebasing: bytes[topicContents]))
            } catch {
                throw ProtocolError(.badTopic, error.message, id: id)
            }
        }

        switch kind {
        case .sub, .unsub:
            if data != nil { throw ProtocolError(.badRequest, "\"data\" is only for pub", id: id) }
            let pattern = try withTopicBytes { (raw) throws(TopicError) in try TopicPattern(bytes: raw) }
            if kind == .unsub {
                if since != nil || sinceTime != nil || epoch != nil || last != nil {
                    throw ProtocolError(.badRequest, "\"since\" is only for sub", id: id)
                }
                return .unsubscribe(id: id, pattern: pattern)
            }
            var position: ReplayPosition?
            if [since, sinceTime, last].compactMap({ $0 }).count > 1 {
                throw ProtocolError(.badRequest, "give one of \"since\", \"since_time\" and \"last\"", id: id)
            }
            if let since {
                position = try parseSince(scanner: scanner, range: since, id: id)
            } else if let sinceTime {
                guard let ms = scanner.unsignedInteger(sinceTime), ms <= UInt64(Int64.max) else {
                    throw ProtocolError(.badRequest, "\"since_time\" must be a non-negative integer (unix milliseconds)", id: id)
                }
                position = .time(unixMilliseconds: Int64(ms))
            } else if let last {
                guard let count = scanner.unsignedInteger(last), count <= maxSince else {
                    throw ProtocolError(.badRequest, "\"last\" must be an integer from 0 to \(maxSince)", id: id)
                }
                position = .last(count)
            }
            var epochText: String?
            if let epoch {
                guard scanner.bytes[epoch.lowerBound] == UInt8(ascii: "\""), epoch.count <= 66 else {
                    throw ProtocolError(.badRequest, "\"epoch\" must be a string of at most 64 characters", id: id)
                }
                epochText = String(decoding: scanner.decodeString(epoch.lowerBound + 1..<epoch.upperBound - 1), as: UTF8.self)
            }
            return .subscribe(id: id, pattern: pattern, since: position, epoch: epochText)
        case .pub:
            if since != nil || sinceTime != nil || epoch != nil || last != nil {
                throw ProtocolError(.badRequest, "\"since\" is only for sub", id: id)
            }
            let concrete = try withTopicBytes { (raw) throws(TopicError) in try Topic(bytes: raw) }
            guard let data else { throw ProtocolError(.badRequest, "missing \"data\"", id: id) }
            guard data.count <= limits.maxPayloadBytes else {
                throw ProtocolError(.tooLarge, "data is \(data.count) bytes; at most \(limits.maxPayloadBytes)", id: id)
            }
            return .publish(Publish(id: id, topic: concrete, payload: try slice(frame, data), format: .json))
        }
    }

    /// The bytes of `range` (offsets into the frame's readable bytes, found by the scanner
    /// over those very bytes) as a slice of `frame`, without a copy.
    private static func slice(_ frame: ByteBuffer, _ range: Range<Int>) throws(ProtocolError) -> ByteBuffer {
        guard let slice = frame.getSlice(at: frame.readerIndex + range.lowerBound, length: range.count) else {
            throw ProtocolError(.internal, "scanned range \(range) outside a \(frame.readableBytes)-byte frame")
        }
        return slice
    }

    /// The largest `since` sequence: the log keeps sequences as SQLite (signed 64-bit) integers.
    static let maxSince = UInt64(Int64.max)

    private static func parseSince(scanner: borrowing JSONScanner, range: Range<Int>, id: RequestID?) throws(ProtocolError) -> ReplayPosition {
        let bytes = scanner.bytes
        if bytes[range.lowerBound] != UInt8(ascii: "{") {
            guard let seq = scanner.unsignedInteger(range), seq <= maxSince else {
                throw ProtocolError(
                    .badRequest, "\"since\" must be an integer from 0 to \(maxSince) or an object of topic → sequence",
                    id: id)
            }
            return .sequence(seq)
        }
        // An object of topic → sequence; its syntax was already validated.
        var inner = JSONScanner(UnsafeRawBufferPointer(rebasing: bytes[range]))
        func syntax<R>(_ body: (inout JSONScanner) throws(JSONSyntaxError) -> R) throws(ProtocolError) -> R {
            do throws(JSONSyntaxError) {
                return try body(&inner)
            } catch {
                throw ProtocolError(.badJSON, error.description, id: id)
            }
        }
        var map: [Topic: UInt64] = [:]
        try syntax { (s) throws(JSONSyntaxError) in
            try s.expect(UInt8(ascii: "{"), "'{'")
            s.skipWhitespace()
        }
        if inner.peek() == UInt8(ascii: "}") { return .perTopic(map) }
        while true {
            let (key, escaped, value) = try syntax { (s) throws(JSONSyntaxError) in
                s.skipWhitespace()
                let (key, escaped) = try s.scanString()
                try s.expect(UInt8(ascii: ":"), "':'")
                return (key, escaped, try s.skipValue())
            }
            let name = escaped ? inner.decodeString(key) : Array(inner.bytes[key])
            let parsed: Result<Topic, TopicError> = name.withUnsafeBytes { raw in
                Result { () throws(TopicError) in try Topic(bytes: raw) }
            }
            let topic: Topic
            switch parsed {
            case .success(let named): topic = named
            case .failure(let error): throw ProtocolError(.badTopic, "in \"since\": \(error.message)", id: id)
            }
            guard let seq = inner.unsignedInteger(value), seq <= maxSince else {
                throw ProtocolError(
                    .badRequest, "\"since\" sequence for \(topic) must be an integer from 0 to \(maxSince)", id: id)
            }
            map[topic] = seq
            inner.skipWhitespace()
            if inner.peek() == UInt8(ascii: ",") { inner.position += 1; continue }
            break
        }
        return .perTopic(map)
    }

    private enum Op { case sub, unsub, pub }

    /// The envelope members the broker reads; everything else is skipped (and validated).
    private enum Key {
        case op, topic, id, since, sinceTime, epoch, last, data, other

        init(scanner: borrowing JSONScanner, range: Range<Int>, escaped: Bool) {
            if escaped {
                switch scanner.decodeString(range) {
                case Array("op".utf8): self = .op
                case Array("topic".utf8): self = .topic
                case Array("id".utf8): self = .id
                case Array("since".utf8): self = .since
                case Array("since_time".utf8): self = .sinceTime
                case Array("epoch".utf8): self = .epoch
                case Array("last".utf8): self = .last
                case Array("data".utf8): self = .data
                default: self = .other
                }
                return
            }
            if scanner.equals(range, "op") { self = .op }
            else if scanner.equals(range, "topic") { self = .topic }
            else if scanner.equals(range, "id") { self = .id }
            else if scanner.equals(range, "data") { self = .data }
            else if scanner.equals(range, "since") { self = .since }
            else if scanner.equals(range, "since_time") { self = .sinceTime }
            else if scanner.equals(range, "epoch") { self = .epoch }
            else if scanner.equals(range, "last") { self = .last }
            else { self = .other }
        }
    }
}
