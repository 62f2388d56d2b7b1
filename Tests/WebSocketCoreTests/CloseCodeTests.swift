import Testing
import WebSocketCore

@Suite struct CloseCodeTests {
    @Test(arguments: [UInt16(1000), 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999])
    func validOnWire(code: UInt16) {
        #expect(CloseCode(code).isValidOnWire)
    }

    @Test(arguments: [UInt16(0), 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
    func invalidOnWire(code: UInt16) {
        #expect(!CloseCode(code).isValidOnWire)
    }

    @Test func maskingKeyBytesAreInWireOrder() {
        let key = MaskingKey(0x37, 0xfa, 0x21, 0x3d)
        #expect([key[0], key[1], key[2], key[3], key[4]] == [0x37, 0xfa, 0x21, 0x3d, 0x37])
    }
}
