// libFuzzer entry point for the broker's requests: the input as a text frame
// (`RequestDecoder.parse(text:)`, when it is UTF-8 as the receiver guarantees), as a binary
// frame (`parse(binary:)`, the binary publish header) and as a JSON document
// (`JSONScanner`), each with the default limits and with small ones.
//
// Checks: `JSONScanner.isValid` agrees with `ReferenceJSON` on every input; a top-level
// string decodes (`decodeString`) to what a second decoder reads; a text request is
// `bad_json` only when the reference rejects the frame, and is accepted only when the
// reference accepts it; what a request carries is well-formed (the publish payload is one
// JSON value without surrounding whitespace, topics and patterns parse again to the same
// name, an id is a JSON string or number within its limit); a binary publish carries the
// header's topic and id and exactly the bytes after it; every error message is one line.
import FuzzerSupport
import NIOCore
@_spi(Fuzzing) import Switchboard

runFuzzer(fuzz)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    checkScanner(bytes)
    for limits in [RequestDecoder.Limits(), RequestDecoder.Limits(maxPayloadBytes: 16, maxIDBytes: 8)] {
        if String(validating: bytes, as: UTF8.self) != nil { checkText(bytes, limits) }
        checkBinary(bytes, limits)
    }
    return 0
}

func checkScanner(_ bytes: [UInt8]) {
    let valid = bytes.withUnsafeBytes { JSONScanner.isValid($0) }
    require(valid == ReferenceJSON.isValid(bytes, maxDepth: JSONScanner.maxDepth), "JSONScanner.isValid disagrees with the reference")
    guard valid else { return }
    bytes.withUnsafeBytes { raw in
        var scanner = JSONScanner(raw)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "\""), let (contents, _) = try? scanner.scanString() else { return }
        let decoded = scanner.decodeString(contents)
        require(decoded == referenceDecode(Array(raw[contents])), "decodeString differs from the reference")
    }
}

/// The bytes a JSON string's contents (between the quotes, already validated) stand for.
func referenceDecode(_ contents: [UInt8]) -> [UInt8] {
    let simple: [UInt8: UInt32] = [
        UInt8(ascii: "\""): 0x22, UInt8(ascii: "\\"): 0x5C, UInt8(ascii: "/"): 0x2F, UInt8(ascii: "b"): 0x08,
        UInt8(ascii: "f"): 0x0C, UInt8(ascii: "n"): 0x0A, UInt8(ascii: "r"): 0x0D, UInt8(ascii: "t"): 0x09,
    ]
    func hex(_ at: Int) -> UInt32 { UInt32(String(decoding: contents[at..<at + 4], as: UTF8.self), radix: 16)! }
    var bytes: [UInt8] = []
    var index = 0
    while index < contents.count {
        guard contents[index] == UInt8(ascii: "\\") else {
            bytes.append(contents[index])
            index += 1
            continue
        }
        let escaped = contents[index + 1]
        index += 2
        var value: UInt32
        if let character = simple[escaped] {
            value = character
        } else {
            value = hex(index)
            index += 4
            if (0xD800..<0xDC00).contains(value) {
                value = 0x10000 + (value - 0xD800) * 0x400 + (hex(index + 2) - 0xDC00)
                index += 6
            }
        }
        bytes += String(Unicode.Scalar(value)!).utf8
    }
    return bytes
}

func checkText(_ bytes: [UInt8], _ limits: RequestDecoder.Limits) {
    let request: ClientRequest
    do {
        request = try RequestDecoder.parse(text: ByteBuffer(bytes: bytes), limits: limits)
    } catch {
        checkOneLine(error.message, "text request error")
        if error.code == .badJSON {
            require(error.id == nil, "bad_json names an id")
            // Each member's value may nest `maxDepth` deep inside the request object.
            require(!ReferenceJSON.isValid(bytes, maxDepth: JSONScanner.maxDepth), "bad_json for valid JSON")
        } else {
            require(ReferenceJSON.isValid(bytes, maxDepth: JSONScanner.maxDepth + 1), "\(error.code) for invalid JSON")
        }
        return
    }
    require(ReferenceJSON.isValid(bytes, maxDepth: JSONScanner.maxDepth + 1), "accepted invalid JSON")
    if let id = request.id {
        let token = Array(id.json.readableBytesView)
        require(token.count <= limits.maxIDBytes, "id longer than the limit")
        require(ReferenceJSON.isValid(token, maxDepth: 0), "id is not one JSON scalar")
        require(token.first == UInt8(ascii: "\"") || token.first == UInt8(ascii: "-")
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(token.first!), "id is neither a string nor a number")
    }
    switch request {
    case .publish(let publish):
        let payload = Array(publish.payload.readableBytesView)
        require(publish.format == .json, "text publish is not JSON")
        require(payload.count <= limits.maxPayloadBytes, "payload over the limit")
        require(ReferenceJSON.isValid(payload, maxDepth: JSONScanner.maxDepth), "payload is not one JSON value")
        require(!isWhitespace(payload.first!) && !isWhitespace(payload.last!), "payload keeps whitespace")
        require((try? Topic(publish.topic.name)) == publish.topic, "topic does not parse again")
    case .subscribe(_, let pattern, let since, _):
        require((try? TopicPattern(pattern.name)) == pattern, "pattern does not parse again")
        if case .time(let ms) = since { require(ms >= 0, "negative since_time") }
    case .unsubscribe(_, let pattern):
        require((try? TopicPattern(pattern.name)) == pattern, "pattern does not parse again")
    }
}

func isWhitespace(_ byte: UInt8) -> Bool {
    byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
}

func checkBinary(_ bytes: [UInt8], _ limits: RequestDecoder.Limits) {
    let request: ClientRequest
    do {
        request = try RequestDecoder.parse(binary: ByteBuffer(bytes: bytes), limits: limits)
    } catch {
        checkOneLine(error.message, "binary request error")
        return
    }
    guard case .publish(let publish) = request else { fatalError("a binary frame is only a publish") }
    require(bytes[0] == WireProtocol.binaryPublish, "accepted another binary op")
    let topicLength = Int(bytes[1])
    let topic = bytes[2..<2 + topicLength]
    let idLength = Int(bytes[2 + topicLength])
    let idBytes = bytes[3 + topicLength..<3 + topicLength + idLength]
    let payload = bytes[(3 + topicLength + idLength)...]
    require(Array(publish.topic.name.utf8) == Array(topic), "topic is not the header's")
    require((try? Topic(publish.topic.name)) == publish.topic, "topic does not parse again")
    require(publish.format == .binary, "binary publish is not binary")
    require(Array(publish.payload.readableBytesView) == Array(payload), "payload is not the rest of the frame")
    require(payload.count <= limits.maxPayloadBytes, "payload over the limit")
    if idLength == 0 {
        require(publish.id == nil, "an id from nothing")
    } else {
        require(idLength <= limits.maxIDBytes, "id longer than the limit")
        require(publish.id == RequestID(string: String(decoding: idBytes, as: UTF8.self)), "id is not the header's")
    }
}
