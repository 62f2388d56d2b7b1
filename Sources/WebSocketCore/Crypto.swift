import COpenSSL

/// The cryptographic primitives the WebSocket protocol needs, from the system's OpenSSL 3
/// (libcrypto), plus a strict base64 codec written in Swift.
///
/// - SHA-1: the handshake's `Sec-WebSocket-Accept` (RFC 6455 §4.2.2).
/// - Secure random bytes: `Sec-WebSocket-Key` nonces and masking keys (RFC 6455 §4.1, §5.3).
/// - Base64: the handshake keys and HTTP Basic credentials.
public enum Crypto {
    // MARK: Digests

    /// SHA-1 of `data` (20 bytes).
    public static func sha1(_ data: some Sequence<UInt8>) -> [UInt8] {
        digest(data, EVP_sha1(), length: 20)
    }

    /// The `length`-byte digest of `data` with OpenSSL's message digest `md` (an `EVP_MD`).
    package static func digest(_ data: some Sequence<UInt8>, _ md: OpaquePointer?, length: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        var outLength: UInt32 = 0
        let ok = withBytes(data) { data in
            out.withUnsafeMutableBufferPointer { out in
                EVP_Digest(data.baseAddress, data.count, out.baseAddress, &outLength, md, nil) == 1
            }
        }
        // Not reachable from input: a digest fails only when OpenSSL itself cannot run.
        precondition(ok && Int(outLength) == length, "OpenSSL EVP_Digest failed")
        return out
    }

    /// Calls `body` with the bytes of `data` in contiguous memory, copying only when needed.
    package static func withBytes<R>(_ data: some Sequence<UInt8>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let result = data.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(data).withUnsafeBytes(body)
    }

    // MARK: Random

    /// Fills `buffer` with cryptographically secure random bytes (OpenSSL `RAND_bytes`).
    /// Traps if the generator fails: nothing that asked for a secret can go on without one.
    public static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var done = 0
        while done < buffer.count {
            let chunk = min(buffer.count - done, Int(Int32.max))
            let ok = RAND_bytes(base.advanced(by: done).assumingMemoryBound(to: UInt8.self), Int32(chunk))
            // Not reachable from input (see above): only a broken OpenSSL fails here.
            precondition(ok == 1, "OpenSSL RAND_bytes failed")
            done += chunk
        }
    }

    /// `count` cryptographically secure random bytes.
    public static func randomBytes(count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            fillRandom(UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// A random `UInt32`, e.g. for a masking key.
    public static func randomUInt32() -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { fillRandom($0) }
        return value
    }

    // MARK: Base64 (RFC 4648 §4, standard alphabet, padded)

    private static let base64Alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// 0...63 for an alphabet byte, 0xFF for anything else.
    private static let base64Values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, byte) in base64Alphabet.enumerated() { table[Int(byte)] = UInt8(index) }
        return table
    }()

    /// Standard padded base64 of `data`.
    public static func base64Encode(_ data: some Sequence<UInt8>) -> String {
        withBytes(data) { input in
            let outputCount = (input.count + 2) / 3 * 4
            return String(unsafeUninitializedCapacity: outputCount) { output in
                base64Alphabet.withUnsafeBufferPointer { alphabet in
                    var i = 0, o = 0
                    while i + 3 <= input.count {
                        let v = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                        output[o] = alphabet[Int(v >> 18)]
                        output[o + 1] = alphabet[Int(v >> 12 & 63)]
                        output[o + 2] = alphabet[Int(v >> 6 & 63)]
                        output[o + 3] = alphabet[Int(v & 63)]
                        i += 3
                        o += 4
                    }
                    let rest = input.count - i
                    if rest > 0 {
                        let v = UInt32(input[i]) << 16 | (rest == 2 ? UInt32(input[i + 1]) << 8 : 0)
                        output[o] = alphabet[Int(v >> 18)]
                        output[o + 1] = alphabet[Int(v >> 12 & 63)]
                        output[o + 2] = rest == 2 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "=")
                        output[o + 3] = UInt8(ascii: "=")
                        o += 4
                    }
                    return o
                }
            }
        }
    }

    /// Decodes standard padded base64, strictly: the length is a multiple of 4, only the
    /// 64 alphabet characters appear before the padding, padding is `=` or `==` at the very
    /// end, the unused bits of the last character are zero (the canonical encoding, RFC 4648
    /// §3.5), and no whitespace or line breaks. Returns nil for anything else.
    public static func base64Decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { base64Decode(bytes: $0) }
    }

    /// `base64Decode(_:)` over the encoded bytes.
    public static func base64Decode(bytes input: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard input.count % 4 == 0 else { return nil }
        if input.isEmpty { return [] }
        var padding = 0
        if input[input.count - 1] == UInt8(ascii: "=") {
            padding = input[input.count - 2] == UInt8(ascii: "=") ? 2 : 1
        }
        let outputCount = input.count / 4 * 3 - padding
        var valid = true
        let output = [UInt8](unsafeUninitializedCapacity: outputCount) { output, initialized in
            base64Values.withUnsafeBufferPointer { values in
                var i = 0, o = 0
                let fullQuads = padding == 0 ? input.count : input.count - 4
                while i < fullQuads {
                    let a = values[Int(input[i])], b = values[Int(input[i + 1])]
                    let c = values[Int(input[i + 2])], d = values[Int(input[i + 3])]
                    if (a | b | c | d) & 0xC0 != 0 { valid = false; return }
                    let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6 | UInt32(d)
                    output[o] = UInt8(truncatingIfNeeded: v >> 16)
                    output[o + 1] = UInt8(truncatingIfNeeded: v >> 8)
                    output[o + 2] = UInt8(truncatingIfNeeded: v)
                    i += 4
                    o += 3
                }
                if padding > 0 {
                    let a = values[Int(input[i])], b = values[Int(input[i + 1])]
                    let c = padding == 1 ? values[Int(input[i + 2])] : 0
                    if (a | b | c) & 0xC0 != 0 { valid = false; return }
                    let v = UInt32(a) << 18 | UInt32(b) << 12 | UInt32(c) << 6
                    // Non-canonical: bits below the last full byte must be zero.
                    if padding == 2 ? v & 0xFFFF != 0 : v & 0xFF != 0 { valid = false; return }
                    output[o] = UInt8(truncatingIfNeeded: v >> 16)
                    if padding == 1 { output[o + 1] = UInt8(truncatingIfNeeded: v >> 8) }
                }
                initialized = outputCount
            }
            if !valid { initialized = 0 }
        }
        return valid ? output : nil
    }
}
