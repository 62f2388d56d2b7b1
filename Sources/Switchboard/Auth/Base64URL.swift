import WebSocketCore

/// base64url (RFC 4648 §5) without padding: the alphabet of JWTs and of opaque tokens.
@_spi(Fuzzing) public enum Base64URL {
    /// The bytes in base64url, unpadded.
    @_spi(Fuzzing) public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var out = ""
        for c in Crypto.base64Encode(bytes).unicodeScalars {
            switch c {
            case "+": out.unicodeScalars.append("-")
            case "/": out.unicodeScalars.append("_")
            case "=": continue
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Strict: only the base64url alphabet, no padding, canonical trailing bits.
    @_spi(Fuzzing) public static func decode(_ text: Substring) -> [UInt8]? {
        guard text.utf8.count % 4 != 1 else { return nil }
        var standard = ""
        standard.reserveCapacity(text.utf8.count + 3)
        for c in text.unicodeScalars {
            switch c {
            case "-": standard.unicodeScalars.append("+")
            case "_": standard.unicodeScalars.append("/")
            case "+", "/", "=": return nil
            default: standard.unicodeScalars.append(c)
            }
        }
        while standard.utf8.count % 4 != 0 { standard += "=" }
        return Crypto.base64Decode(standard)
    }
}
