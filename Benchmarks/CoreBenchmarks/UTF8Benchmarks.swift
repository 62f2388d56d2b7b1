import WebSocketCore

func utf8Benchmarks() -> [Benchmark] {
    let size = 1 << 20
    let ascii = makeText(size: size, from: [
        "The quick brown fox jumps over the lazy dog. {\"op\":\"pub\",\"topic\":\"chat.room42\",\"seq\":12345}\n",
    ])
    // Multilingual sentences, about 70 % ASCII by bytes (checked below).
    let mixed = makeText(size: size, from: [
        "Hello world, this is a plain English sentence with some words. ",
        "Grüße aus Köln – schön, daß Sie da sind! ",
        "Le cœur a ses raisons que la raison ne connaît point. ",
        "Съешь же ещё этих мягких булок. ",
        "これは日本語の文です。 ",
        "Emoji 🎉 and math ∑ ≤ ∞. ",
        "The quick brown fox jumps over the lazy dog again and again. ",
        "El niño comió piña en la montaña. ",
        "Version 2.3.1 released on 2024-05-01 with 42 fixes and 7 features. ",
    ])
    let asciiShare = Double(mixed.filter { $0 < 0x80 }.count) / Double(mixed.count)
    print("utf8: mixed text is \(fixed(asciiShare * 100, 1)) % ASCII by bytes")
    precondition(ascii.withUnsafeBytes { UTF8Validator.isValid($0) })
    precondition(mixed.withUnsafeBytes { UTF8Validator.isValid($0) })

    // Keep the inputs alive and at stable addresses for the whole run.
    let asciiBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: ascii.count, alignment: 64)
    asciiBytes.copyBytes(from: ascii)
    let mixedBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: mixed.count, alignment: 64)
    mixedBytes.copyBytes(from: mixed)
    let a = UnsafeRawBufferPointer(asciiBytes)
    let m = UnsafeRawBufferPointer(mixedBytes)

    return [
        Benchmark("utf8/1MiB/ascii", .bytes(a.count)) {
            blackHole(UTF8Validator.isValid(identity(a)))
        },
        Benchmark("utf8/1MiB/mixed", .bytes(m.count)) {
            blackHole(UTF8Validator.isValid(identity(m)))
        },
        Benchmark("utf8/1MiB/mixed-4KiB-pieces", .bytes(m.count)) {
            var v = UTF8Validator()
            let input = identity(m)
            var start = 0
            var ok = true
            while start < input.count {
                let end = min(start + 4096, input.count)
                ok = v.validate(UnsafeRawBufferPointer(rebasing: input[start ..< end])) && ok
                start = end
            }
            blackHole(ok && v.isAtCharacterBoundary)
        },
        Benchmark("utf8/1MiB/ascii/naive-bytes", .bytes(a.count)) {
            blackHole(naiveIsValidUTF8(identity(a)))
        },
        Benchmark("utf8/1MiB/mixed/naive-bytes", .bytes(m.count)) {
            blackHole(naiveIsValidUTF8(identity(m)))
        },
        Benchmark("utf8/1MiB/ascii/stdlib-String", .bytes(a.count)) {
            blackHole(String(validating: identity(a), as: UTF8.self) != nil)
        },
        Benchmark("utf8/1MiB/mixed/stdlib-String", .bytes(m.count)) {
            blackHole(String(validating: identity(m), as: UTF8.self) != nil)
        },
        Benchmark("utf8/64B/ascii", .bytes(64)) {
            blackHole(UTF8Validator.isValid(UnsafeRawBufferPointer(rebasing: identity(a)[0 ..< 64])))
        },
    ]
}

func makeText(size: Int, from sentences: [String]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(size + 256)
    var i = 0
    while true {
        let s = Array(sentences[i % sentences.count].utf8)
        if out.count + s.count > size { break }
        out += s
        i += 1
    }
    // Pad with ASCII to exactly `size` bytes.
    out += [UInt8](repeating: 0x20, count: size - out.count)
    return out
}

/// The baseline: one byte at a time with explicit range checks (no ASCII fast path).
@inline(never)
func naiveIsValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var i = 0
    let n = bytes.count
    while i < n {
        let b0 = bytes[i]
        if b0 < 0x80 { i += 1; continue }
        let length: Int
        var lower: UInt8 = 0x80, upper: UInt8 = 0xBF
        switch b0 {
        case 0xC2 ... 0xDF: length = 2
        case 0xE0: length = 3; lower = 0xA0
        case 0xE1 ... 0xEC, 0xEE ... 0xEF: length = 3
        case 0xED: length = 3; upper = 0x9F
        case 0xF0: length = 4; lower = 0x90
        case 0xF1 ... 0xF3: length = 4
        case 0xF4: length = 4; upper = 0x8F
        default: return false
        }
        if i + length > n { return false }
        let b1 = bytes[i + 1]
        if b1 < lower || b1 > upper { return false }
        for j in 2 ..< length where bytes[i + j] & 0xC0 != 0x80 { return false }
        i += length
    }
    return true
}
