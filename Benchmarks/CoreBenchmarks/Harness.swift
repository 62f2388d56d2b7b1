// A tiny micro-benchmark harness: no dependencies, one process, wall-clock time.
//
// Each benchmark is warmed up, calibrated so that one sample takes about
// `targetSampleTime`, then measured `samples` times; the best and the median sample are
// reported as throughput (GB/s for bytes, M/s for items) and time per iteration.

/// What one iteration processes, for the throughput column.
enum Throughput {
    /// Bytes per iteration: reported in GB/s (10^9 bytes per second).
    case bytes(Int)
    /// Items (messages, frames…) per iteration: reported in millions per second.
    case items(Int, unit: String)
}

struct Benchmark {
    var name: String
    var throughput: Throughput
    /// One iteration. Feed every result to `blackHole` so that it is not optimised away.
    var body: () -> Void

    init(_ name: String, _ throughput: Throughput, body: @escaping () -> Void) {
        self.name = name
        self.throughput = throughput
        self.body = body
    }

    /// Whether the name contains `filter`, ignoring case.
    func matches(_ filter: String) -> Bool {
        name.lowercased().contains(filter.lowercased())
    }
}

/// Consumes a value in a way the optimiser cannot see through, so the work that produced
/// it is kept.
@inline(never) @_optimize(none)
func blackHole<T>(_ value: T) {}

/// Returns `value` through a call the optimiser cannot see through, so that a computation
/// on it is not hoisted out of the benchmark loop as loop-invariant.
@inline(never) @_optimize(none)
func identity<T>(_ value: T) -> T { value }

// Non-generic overloads for the common types: an unspecialised generic call costs a few
// nanoseconds, which matters for benchmarks of small messages.
@inline(never) @_optimize(none) func blackHole(_ value: Bool) {}
@inline(never) @_optimize(none) func blackHole(_ value: Int) {}
@inline(never) @_optimize(none) func blackHole(_ value: UnsafeRawBufferPointer) {}
@inline(never) @_optimize(none) func blackHole(_ value: UnsafeMutableRawBufferPointer) {}
@inline(never) @_optimize(none) func identity(_ value: Int) -> Int { value }
@inline(never) @_optimize(none) func identity(_ value: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer { value }
@inline(never) @_optimize(none) func identity(_ value: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer { value }

struct HarnessOptions {
    var samples = 5
    var targetSampleTime: Duration = .milliseconds(100)
    var warmUpTime: Duration = .milliseconds(50)
}

struct BenchmarkResult {
    var name: String
    var iterations: Int
    var best: Duration
    var median: Duration
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}

func measure(_ benchmark: Benchmark, options: HarnessOptions) -> BenchmarkResult {
    let clock = ContinuousClock()
    let body = benchmark.body

    func time(_ iterations: Int) -> Duration {
        let start = clock.now
        for _ in 0 ..< iterations { body() }
        return clock.now - start
    }

    // Warm up while finding how many iterations make a sample of about the target time.
    var iterations = 1
    var elapsed = time(iterations)
    var warmed: Duration = elapsed
    while elapsed < options.warmUpTime || warmed < options.warmUpTime {
        iterations = min(iterations * 2, 1 << 40)
        elapsed = time(iterations)
        warmed += elapsed
    }
    let perIteration = max(elapsed.seconds / Double(iterations), 1e-10)
    iterations = max(1, Int(options.targetSampleTime.seconds / perIteration))

    var samples: [Duration] = []
    for _ in 0 ..< options.samples { samples.append(time(iterations)) }
    samples.sort()
    return BenchmarkResult(name: benchmark.name, iterations: iterations, best: samples[0], median: samples[samples.count / 2])
}

func format(_ result: BenchmarkResult, _ throughput: Throughput) -> String {
    func rate(_ d: Duration) -> String {
        let perSecond = Double(result.iterations) / d.seconds
        switch throughput {
        case .bytes(let n): return fixed(perSecond * Double(n) / 1e9, 2) + " GB/s"
        case .items(let n, let unit): return fixed(perSecond * Double(n) / 1e6, 3) + " M\(unit)/s"
        }
    }
    let nsPerIteration = result.best.seconds * 1e9 / Double(result.iterations)
    return pad(result.name, 34) + pad("best " + rate(result.best), 22) + pad("median " + rate(result.median), 24)
        + fixed(nsPerIteration, 1) + " ns/iter"
}

func fixed(_ x: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0 ..< digits { scale *= 10 }
    let r = (x * scale).rounded() / scale
    var s = String(r)
    if let dot = s.firstIndex(of: ".") {
        let have = s.distance(from: dot, to: s.endIndex) - 1
        if have < digits { s += String(repeating: "0", count: digits - have) }
    }
    return s
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}

/// Runs every benchmark whose name contains one of `filters` (all when empty).
func runBenchmarks(_ benchmarks: [Benchmark], filters: [String], options: HarnessOptions = HarnessOptions()) {
    let selected = benchmarks.filter { b in
        filters.isEmpty || filters.contains { b.matches($0) }
    }
    for b in selected {
        print(format(measure(b, options: options), b.throughput))
    }
}

/// The cost of the harness itself (closure call, `identity`, `blackHole`): subtract it
/// mentally from very short benchmarks.
func harnessBenchmarks() -> [Benchmark] {
    [
        Benchmark("harness/empty", .items(1, unit: "iter")) {
            blackHole(identity(0))
        },
    ]
}
