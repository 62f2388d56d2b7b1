import AsyncTestSupport
@_spi(Fuzzing) @testable import Switchboard
import Testing

@Suite struct TokenCryptoTests {
    @Test func sha256() {
        #expect(hex(TokenCrypto.sha256("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(TokenCrypto.sha256([UInt8]())) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func hmacSHA256RFC4231() {
        // Test case 1 and 2 of RFC 4231 §4.
        #expect(hex(TokenCrypto.hmacSHA256(key: [UInt8](repeating: 0x0b, count: 20), data: "Hi There".utf8))
            == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(hex(TokenCrypto.hmacSHA256(key: "Jefe".utf8, data: "what do ya want for nothing?".utf8))
            == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        // Empty key and empty message.
        #expect(hex(TokenCrypto.hmacSHA256(key: [UInt8](), data: [UInt8]()))
            == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
        // A non-contiguous sequence goes through the copying path.
        #expect(TokenCrypto.hmacSHA256(key: "Jefe".utf8.lazy.map { $0 }, data: "x".utf8.lazy.map { $0 })
            == TokenCrypto.hmacSHA256(key: Array("Jefe".utf8), data: Array("x".utf8)))
    }
}
