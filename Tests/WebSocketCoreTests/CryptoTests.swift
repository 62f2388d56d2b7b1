import AsyncTestSupport
import Testing
import WebSocketCore

@Suite struct CryptoTests {
    @Test func sha1() {
        #expect(hex(Crypto.sha1("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(Crypto.sha1([UInt8]())) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        // A non-contiguous sequence goes through the copying path.
        #expect(Crypto.sha1("abc".utf8.lazy.map { $0 }) == Crypto.sha1(Array("abc".utf8)))
    }

    @Test func randomBytes() {
        #expect(Crypto.randomBytes(count: 0).isEmpty)
        let a = Crypto.randomBytes(count: 32), b = Crypto.randomBytes(count: 32)
        #expect(a.count == 32 && a != b)
    }

    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func base64RFC4648(plain: String, encoded: String) {
        #expect(Crypto.base64Encode(plain.utf8) == encoded)
        #expect(Crypto.base64Decode(encoded) == Array(plain.utf8))
    }

    @Test func base64RoundTripsEveryByte() {
        for count in 0..<70 {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 250) }
            #expect(Crypto.base64Decode(Crypto.base64Encode(bytes)) == bytes)
        }
        let all = Array(UInt8.min...UInt8.max)
        #expect(Crypto.base64Decode(Crypto.base64Encode(all)) == all)
    }

    @Test(arguments: [
        "Zg", "Zg=", "Zm9", "Zg==Zg==", "Z===", "====", "Zh==", "Zm9=", "Zm+=", "Zm9v\n", " Zm9v", "Zm9v YmFy",
        "Zm-v", "Zm_v", "Zm9\u{0}", "Zm=v", "=m9v",
    ])
    func base64RejectsNonCanonicalInput(text: String) {
        #expect(Crypto.base64Decode(text) == nil)
    }
}
