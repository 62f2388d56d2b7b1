// swift-tools-version:6.0
// libFuzzer targets for Switchboard's input surfaces. A separate package so that the root
// package's `swift build` / `swift test` never builds these; see README.md for the command.
import PackageDescription

let core = Target.Dependency.product(name: "WebSocketCore", package: "Switchboard")
let webSockets = Target.Dependency.product(name: "WebSockets", package: "Switchboard")
let broker = Target.Dependency.product(name: "Switchboard", package: "Switchboard")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")

/// One executable per fuzzer: `Sources/<name>/main.swift` defines `LLVMFuzzerTestOneInput`
/// with `@_cdecl` and calls `runFuzzer(_:)` from its top-level code. Add a line here to add
/// a fuzzer (and `scripts/fuzz-smoke.sh` runs it).
let fuzzers: [(name: String, dependencies: [Target.Dependency])] = [
    ("HandshakeFuzzer", [core]),
    ("FrameDecoderFuzzer", [core, nioCore]),
    ("UpgradeFuzzer", [core, webSockets, nioCore, .product(name: "NIOHTTP1", package: "swift-nio"),
                       .product(name: "NIOEmbedded", package: "swift-nio")]),
    ("ClientResponseFuzzer", [core, webSockets]),
    ("WireRequestFuzzer", [broker, nioCore]),
    ("TopicFuzzer", [broker]),
    ("TokenFuzzer", [broker]),
    ("ConfigFuzzer", [broker]),
]

let package = Package(
    name: "SwitchboardFuzz",
    dependencies: [
        .package(name: "Switchboard", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // `runFuzzer(_:)` and the checks every fuzzer shares.
        .target(name: "FuzzerSupport"),
    ] + fuzzers.map { fuzzer in
        .executableTarget(name: fuzzer.name, dependencies: ["FuzzerSupport"] + fuzzer.dependencies)
    } + [
        // The TLS record path of `WebSockets` against a raw OpenSSL peer (its own module
        // name: the root package's `COpenSSL` is not a product).
        .systemLibrary(name: "COpenSSLPeer", pkgConfig: "openssl"),
        .executableTarget(
            name: "TLSRecordFuzzer",
            dependencies: [
                "FuzzerSupport", "COpenSSLPeer", webSockets, nioCore,
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)
