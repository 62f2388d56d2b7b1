import ArgumentParser
import Foundation

/// Reads /proc (Linux): load averages, memory in use, and the share of CPU time busy since
/// the previous sample.
struct SystemSampler {
    private var previousCPU: (busy: Double, total: Double)?

    init() throws {
        guard FileManager.default.isReadableFile(atPath: "/proc/stat") else {
            throw ValidationError("publish reads /proc/loadavg, /proc/meminfo and /proc/stat: Linux only")
        }
    }

    mutating func sample() throws -> [(String, [String: Double])] {
        var metrics: [(String, [String: Double])] = []
        let load = try Self.read("/proc/loadavg").split(separator: " ").prefix(3).compactMap { Double($0) }
        if load.count == 3 { metrics.append(("load", ["1m": load[0], "5m": load[1], "15m": load[2]])) }

        // Lines like `MemTotal:  16314000 kB`.
        var memory: [String: Double] = [:]
        for line in try Self.read("/proc/meminfo").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kilobytes = Double(parts[1]) else { continue }
            memory[String(parts[0].dropLast())] = kilobytes
        }
        if let total = memory["MemTotal"], let available = memory["MemAvailable"], total > 0 {
            metrics.append(("memory", ["total_mb": total / 1024, "used_mb": (total - available) / 1024,
                                       "used_pct": (total - available) / total * 100]))
        }

        // The first line: `cpu  user nice system idle iowait irq softirq steal …` in ticks.
        if let line = try Self.read("/proc/stat").split(separator: "\n").first {
            let ticks = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            if ticks.count >= 5 {
                let total = ticks.reduce(0, +)
                let busy = total - ticks[3] - ticks[4]
                if let previous = previousCPU, total > previous.total {
                    metrics.append(("cpu", ["busy_pct": (busy - previous.busy) / (total - previous.total) * 100]))
                }
                previousCPU = (busy, total)
            }
        }
        return metrics
    }

    private static func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }
}
