/// Lowercase hex of `bytes`, the form digest test vectors are published in. Shared by the
/// test targets.
public func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}
