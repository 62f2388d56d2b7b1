// CoreBenchmarks: micro-benchmarks of WebSocketCore's hot paths.
//
//   swift run -c release CoreBenchmarks            # everything
//   swift run -c release CoreBenchmarks mask utf8  # names containing "mask" or "utf8"
//   taskset -c 1 .build/release/CoreBenchmarks     # pinned to one core
//
// To add a group: write `func fooBenchmarks() -> [Benchmark]` in its own file
// (see MaskingBenchmarks.swift) and add it to this list.
let groups: [() -> [Benchmark]] = [
    harnessBenchmarks,
    maskingBenchmarks,
    utf8Benchmarks,
    frameBenchmarks,
    deflateBenchmarks,
]

let filters = Array(CommandLine.arguments.dropFirst())
runBenchmarks(groups.flatMap { $0() }, filters: filters)
