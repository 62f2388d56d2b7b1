import Foundation
import NIOCore
import WebSocketCore
import WebSockets

/// JSON in and out of the admin API: bodies are read with `JSONSerialization` (the API is
/// not a hot path), except a publish's `data`, whose bytes are forwarded as they came.
enum AdminJSON {
    /// A response with a JSON body.
    static func response(_ status: Int, _ object: Any, headers: [(String, String)] = []) -> PlainHTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        var body = ByteBuffer(bytes: data)
        body.writeString("\n")
        return response(status, body: body, headers: headers)
    }

    static func response(_ status: Int, body: ByteBuffer, headers: [(String, String)] = []) -> PlainHTTPResponse {
        var fields = HTTPFields()
        fields.add(name: "Content-Type", value: "application/json")
        fields.add(name: "Cache-Control", value: "no-store")
        for (name, value) in headers { fields.add(name: name, value: value) }
        return PlainHTTPResponse(status: status, headers: fields, body: body)
    }

    static func response(_ error: AdminError) -> PlainHTTPResponse {
        response(error.status, ["error": ["code": error.code, "message": error.message]], headers: error.headers)
    }

    /// The request body as a JSON object; 400 naming the problem otherwise.
    static func object(_ body: ByteBuffer) throws(AdminError) -> [String: Any] {
        guard body.readableBytes > 0 else { throw .badRequest("the request needs a JSON object body") }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(body.readableBytesView), options: [.fragmentsAllowed])
        } catch {
            throw .badRequest("the body is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else { throw .badRequest("the body must be a JSON object") }
        return object
    }

    /// The raw bytes of the top-level member `name` of the JSON object in `body` (already
    /// validated by `object`), nil when absent.
    static func rawMember(_ name: String, of body: ByteBuffer) -> ByteBuffer? {
        let range: Range<Int>? = body.withUnsafeReadableBytes { bytes in
            var scanner = JSONScanner(bytes)
            do throws(JSONSyntaxError) {
                try scanner.expect(UInt8(ascii: "{"), "an object")
                scanner.skipWhitespace()
                if scanner.peek() == UInt8(ascii: "}") { return nil }
                var found: Range<Int>?
                while true {
                    scanner.skipWhitespace()
                    let key = try scanner.scanString()
                    try scanner.expect(UInt8(ascii: ":"), "':'")
                    scanner.skipWhitespace()
                    let value = try scanner.skipValue()
                    if found == nil, scanner.decodeString(key.contents) == Array(name.utf8) { found = value }
                    scanner.skipWhitespace()
                    guard scanner.peek() == UInt8(ascii: ",") else { break }
                    scanner.position += 1
                }
                return found
            } catch {
                return nil
            }
        }
        guard let range else { return nil }
        return body.getSlice(at: body.readerIndex + range.lowerBound, length: range.count)
    }

    static func string(_ object: [String: Any], _ key: String) throws(AdminError) -> String? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let string = value as? String else { throw .badRequest("\(key) must be a string") }
        return string
    }

    static func strings(_ object: [String: Any], _ key: String) throws(AdminError) -> [String]? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let strings = value as? [String] else { throw .badRequest("\(key) must be a list of strings") }
        return strings
    }

    static func bool(_ object: [String: Any], _ key: String) throws(AdminError) -> Bool? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let bool = value as? Bool else { throw .badRequest("\(key) must be true or false") }
        return bool
    }

    /// A non-negative integer member, at most `maximum`.
    static func integer(_ object: [String: Any], _ key: String, maximum: Int) throws(AdminError) -> Int? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, let integer = Int(exactly: number.doubleValue), (0...maximum).contains(integer)
        else {
            throw .badRequest("\(key) must be an integer from 0 to \(maximum)")
        }
        return integer
    }

    /// A query parameter as a non-negative integer at most `maximum`.
    static func query(_ query: [String: String], _ key: String, maximum: UInt64) throws(AdminError) -> UInt64? {
        guard let text = query[key] else { return nil }
        guard let value = UInt64(text), value <= maximum else {
            throw .badRequest("\(key) must be an integer from 0 to \(maximum), not \(text.debugDescription)")
        }
        return value
    }
}
