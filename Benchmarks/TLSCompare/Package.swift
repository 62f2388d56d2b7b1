// swift-tools-version:6.0
// Our TLS handler (system OpenSSL) against swift-nio-ssl (BoringSSL), same WebSocket server
// around both. A separate package so that the root package's `swift build` / `swift test`
// never compile BoringSSL; `Benchmarks/tls-compare.sh` builds and runs it.
import PackageDescription

let package = Package(
    name: "TLSCompare",
    dependencies: [
        .package(name: "Switchboard", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .executableTarget(
            name: "tls-compare",
            dependencies: [
                .product(name: "WebSockets", package: "Switchboard"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/TLSCompare"
        )
    ]
)
