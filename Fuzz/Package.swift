// swift-tools-version:6.0
// libFuzzer targets for Switchboard's pure protocol code. A separate package so that the
// root package's `swift build` / `swift test` never builds these; see README.md for the command.
import PackageDescription

/// One executable per fuzzer: `Sources/<name>/main.swift` defines `LLVMFuzzerTestOneInput`
/// with `@_cdecl` and calls `runFuzzer(_:)` from its top-level code. Add a name here to add a fuzzer.
let fuzzers = ["HandshakeFuzzer", "FrameDecoderFuzzer"]

let package = Package(
    name: "SwitchboardFuzz",
    dependencies: [
        .package(name: "Switchboard", path: ".."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // `runFuzzer(_:)`: starts libFuzzer's driver from a fuzzer's top-level code.
        .target(name: "FuzzerSupport"),
    ] + fuzzers.map { name in
        .executableTarget(
            name: name,
            dependencies: [
                "FuzzerSupport",
                .product(name: "WebSocketCore", package: "Switchboard"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        )
    } + [
        // The TLS record path of `WebSockets` against a raw OpenSSL peer (its own module
        // name: the root package's `COpenSSL` is not a product).
        .systemLibrary(name: "COpenSSLPeer", pkgConfig: "openssl"),
        .executableTarget(
            name: "TLSRecordFuzzer",
            dependencies: [
                "FuzzerSupport",
                "COpenSSLPeer",
                .product(name: "WebSockets", package: "Switchboard"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)
