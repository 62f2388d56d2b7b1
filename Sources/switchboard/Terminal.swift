import Foundation

/// The CLI's own output besides logging: lines a supervising process reads, and the one
/// line that explains a failed start before the process exits with a `sysexits.h` status.
enum Terminal {
    /// Writes a line to standard output at once (unbuffered, so a supervising process sees it).
    static func printUnbuffered(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Prints `switchboard: message` to standard error and exits with `status`.
    static func exit(withError message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("switchboard: \(message)\n".utf8))
        Foundation.exit(status)
    }
}
