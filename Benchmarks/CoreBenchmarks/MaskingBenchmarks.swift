import WebSocketCore

func maskingBenchmarks() -> [Benchmark] {
    let size = 1 << 20
    // One spare byte so the payload can start at offset 1 (unaligned). Never freed: the
    // process ends after the benchmarks.
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 64, alignment: 64)
    storage.initializeMemory(as: UInt8.self, repeating: 0x5A)
    let aligned = UnsafeMutableRawBufferPointer(rebasing: storage[0 ..< size])
    let unaligned = UnsafeMutableRawBufferPointer(rebasing: storage[1 ..< size + 1])
    let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 64, alignment: 64)
    destination.initializeMemory(as: UInt8.self, repeating: 0)
    let key = MaskingKey(0x37, 0xFA, 0x21, 0x3D)

    return [
        Benchmark("mask/1MiB/aligned", .bytes(size)) {
            identity(key).apply(to: identity(aligned))
            blackHole(aligned)
        },
        Benchmark("mask/1MiB/offset1", .bytes(size)) {
            identity(key).apply(to: identity(unaligned), startingAt: 1)
            blackHole(unaligned)
        },
        Benchmark("mask/1MiB/copy", .bytes(size)) {
            identity(key).apply(from: UnsafeRawBufferPointer(identity(unaligned)), to: identity(destination), startingAt: 0)
            blackHole(destination)
        },
        Benchmark("mask/1MiB/naive-bytes", .bytes(size)) {
            naiveMask(identity(aligned), key: identity(key), offset: 0)
            blackHole(aligned)
        },
        Benchmark("mask/125B/aligned", .bytes(125)) {
            identity(key).apply(to: UnsafeMutableRawBufferPointer(rebasing: identity(aligned)[0 ..< 125]), startingAt: 3)
            blackHole(aligned)
        },
    ]
}

/// The baseline: one byte at a time, the key byte picked per index (what a
/// straightforward decoder does).
@inline(never)
func naiveMask(_ bytes: UnsafeMutableRawBufferPointer, key: MaskingKey, offset: Int) {
    let keyBytes = [key[0], key[1], key[2], key[3]]
    for i in 0 ..< bytes.count {
        bytes[i] ^= keyBytes[(i + offset) % 4]
    }
}
