#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Event-loop thread counts that respect the CPUs this process may run on.
///
/// Servers and clients run on NIO's `MultiThreadedEventLoopGroup.singleton` unless given a
/// group: one group for the whole process, shared with every other NIO library in it. NIO
/// sizes it by `System.coreCount`, which honours cgroup limits but not the affinity mask
/// (`taskset`); to size it by the mask, set it first thing in `main`, before anything uses it:
///
///     NIOSingletons.groupLoopCountSuggestion = EventLoopThreads.available
///
/// or pass a group of your own, `MultiThreadedEventLoopGroup(numberOfThreads: EventLoopThreads.available)`.
public enum EventLoopThreads {
    /// The number of CPUs in the process's affinity mask (so `taskset -c 0` gives 1),
    /// where NIO's `System.coreCount` counts every core of the machine. Read from the
    /// `Cpus_allowed` mask in /proc/self/status; `System.coreCount` where that is missing.
    public static var available: Int {
        if let status = try? String(decoding: readFile("/proc/self/status"), as: UTF8.self),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
        {
            let count = line.dropFirst("Cpus_allowed:".count).reduce(0) { total, character in
                total + (character.hexDigitValue.map { $0.nonzeroBitCount } ?? 0)
            }
            if count > 0 { return min(count, System.coreCount) }
        }
        return System.coreCount
    }

    private static func readFile(_ path: String) throws -> [UInt8] {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return [] }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return bytes
    }
}
