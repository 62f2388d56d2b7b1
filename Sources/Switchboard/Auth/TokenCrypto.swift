import COpenSSL
import WebSocketCore

/// The digests behind the broker's tokens, from the system's OpenSSL 3 (libcrypto):
/// SHA-256 for hashed opaque tokens, HMAC-SHA256 for HS256-signed JWTs; and the comparison
/// of secrets. Kept out of `WebSocketCore`, which needs only what the WebSocket protocol
/// itself uses.
@_spi(Fuzzing) public enum TokenCrypto {
    /// Compares two byte strings in time that depends only on their lengths.
    package static func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    /// SHA-256 of `data` (32 bytes).
    package static func sha256(_ data: some Sequence<UInt8>) -> [UInt8] {
        Crypto.digest(data, EVP_sha256(), length: 32)
    }

    /// HMAC-SHA256 of `data` under `key` (32 bytes, RFC 2104).
    @_spi(Fuzzing) public static func hmacSHA256(key: some Sequence<UInt8>, data: some Sequence<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var outLength: UInt32 = 0
        let ok = Crypto.withBytes(key) { key in
            Crypto.withBytes(data) { data in
                out.withUnsafeMutableBufferPointer { out in
                    // OpenSSL 3.0 rejects a NULL key pointer even with length 0: pass a real address.
                    // (A non-empty buffer and a one-byte value always have one.)
                    withUnsafeBytes(of: UInt8(0)) { zero in
                        let keyPointer = key.count > 0 ? key.baseAddress! : zero.baseAddress!
                        return HMAC(
                            EVP_sha256(), keyPointer, Int32(key.count),
                            data.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? zero.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            data.count, out.baseAddress, &outLength
                        ) != nil
                    }
                }
            }
        }
        // Not reachable from input: HMAC fails only when OpenSSL itself cannot run (no memory).
        precondition(ok && outLength == 32, "OpenSSL HMAC-SHA256 failed")
        return out
    }
}
