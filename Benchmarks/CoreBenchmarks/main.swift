// CoreBenchmarks: micro-benchmarks of WebSocketCore's hot paths.
//
//   swift run -c release CoreBenchmarks            # everything
//   swift run -c release CoreBenchmarks mask utf8  # names containing "mask" or "utf8"
//   taskset -c 1 .build/release/CoreBenchmarks     # pinned to one core
import ArgumentParser

struct CoreBenchmarks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "CoreBenchmarks", abstract: "Micro-benchmarks of WebSocketCore's hot paths.")

    // To add a group: write `func fooBenchmarks() -> [Benchmark]` in its own file
    // (see MaskingBenchmarks.swift) and add it to this list.
    static let groups: [@Sendable () -> [Benchmark]] = [
        harnessBenchmarks,
        maskingBenchmarks,
        utf8Benchmarks,
        frameBenchmarks,
        deflateBenchmarks,
    ]

    @Argument(help: "Run only the benchmarks whose names contain one of these (case-insensitive); default: all.")
    var filters: [String] = []

    func run() throws {
        let benchmarks = Self.groups.flatMap { $0() }
        for filter in filters where !benchmarks.contains(where: { $0.matches(filter) }) {
            throw ValidationError(
                "no benchmark name contains \"\(filter)\"; the names are: \(benchmarks.map(\.name).joined(separator: ", "))")
        }
        runBenchmarks(benchmarks, filters: filters)
    }
}

CoreBenchmarks.main()
