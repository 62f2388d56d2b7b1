#if canImport(Glibc)
import Glibc
#endif

/// libFuzzer's driver (compiler-rt `FuzzerDriver.cpp`), linked in by `-sanitize=fuzzer`.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// Runs libFuzzer with this process's command line and `testOneInput`, then exits with its status.
/// Call it from the top-level code of a fuzzer's `main.swift`.
public func runFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    let status = withUnsafeMutablePointer(to: &argv) { argvPointer in
        LLVMFuzzerRunDriver(&argc, argvPointer, testOneInput)
    }
    exit(status)
}

/// The fuzzer's input as an array.
public func inputBytes(_ data: UnsafePointer<UInt8>?, _ size: Int) -> [UInt8] {
    size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
}

/// Traps with `message` unless `condition` holds. Unlike `precondition`, whose message an
/// optimized build drops, the message reaches the fuzzer's log.
public func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

/// Traps unless `text` is one line (no CR or LF): every rejection reason a peer, an operator
/// or a log sees must be. `what` names the check in the trap message.
public func checkOneLine(_ text: String, _ what: @autoclosure () -> String) {
    require(!text.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }), "\(what()) spans lines: \(text.debugDescription)")
}

/// `bytes` cut at each `separator` into at most `maxParts` parts (the last keeps the rest),
/// padded with empty parts up to `maxParts`.
public func parts(of bytes: [UInt8], separator: UInt8, maxParts: Int) -> [[UInt8]] {
    var result = bytes.split(separator: separator, maxSplits: maxParts - 1, omittingEmptySubsequences: false)
        .map(Array.init)
    while result.count < maxParts { result.append([]) }
    return result
}
