// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Switchboard",
    products: [
        .library(name: "WebSocketCore", targets: ["WebSocketCore"]),
        .library(name: "WebSockets", targets: ["WebSockets"]),
        .library(name: "Switchboard", targets: ["Switchboard"]),
        .library(name: "SwitchboardClient", targets: ["SwitchboardClient"]),
        .library(name: "RedisWire", targets: ["RedisWire"]),
        .executable(name: "switchboard", targets: ["switchboard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "WebSocketCore",
            dependencies: [
                "CZlib",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "WebSockets",
            dependencies: [
                "WebSocketCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Switchboard",
            dependencies: [
                "RedisWire",
                "WebSockets",
                "WebSocketCore",
                "CSQLite",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "RedisWire",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .target(
            name: "SwitchboardClient",
            dependencies: [
                "WebSockets",
                "WebSocketCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "switchboard",
            dependencies: [
                "RedisWire",
                "Switchboard",
                "SwitchboardClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "AsyncTestSupport",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/AsyncTestSupport"
        ),
        .target(
            name: "TestPeers",
            dependencies: [
                "AsyncTestSupport",
                "WebSocketCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/TestPeers"
        ),
        .testTarget(
            name: "SwitchboardTests",
            dependencies: [
                "AsyncTestSupport",
                "BrokerProcess",
                "TestPeers",
                "RedisWire",
                "Switchboard",
                "WebSockets",
                "WebSocketCore",
                "CSQLite",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "BrokerProcess",
            dependencies: [
                "AsyncTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/BrokerProcess"
        ),
        .testTarget(
            name: "SwitchboardClientTests",
            dependencies: [
                "AsyncTestSupport",
                "BrokerProcess",
                "SwitchboardClient",
                "Switchboard",
                "WebSockets",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "BrowserSupport",
            dependencies: [
                "AsyncTestSupport",
                "BrokerProcess",
                "WebSockets",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/BrowserSupport"
        ),
        .testTarget(
            name: "BrowserTests",
            dependencies: [
                "AsyncTestSupport",
                "BrokerProcess",
                "BrowserSupport",
                "WebSockets",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "RedisWireTests",
            dependencies: [
                "AsyncTestSupport",
                "BrokerProcess",
                "RedisWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "WebSocketCoreTests",
            dependencies: [
                "AsyncTestSupport",
                "WebSocketCore",
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "WebSocketsTests",
            dependencies: [
                "AsyncTestSupport",
                "TestPeers",
                "WebSockets",
                "COpenSSL",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "echo-server",
            dependencies: ["WebSockets", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/echo-server"
        ),
        .executableTarget(
            name: "autobahn-client",
            dependencies: ["WebSockets", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/autobahn-client"
        ),
        .executableTarget(
            name: "chat-server",
            dependencies: ["WebSockets", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/chat-server"
        ),
        .executableTarget(
            name: "chat-client",
            dependencies: ["SwitchboardClient", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/chat-client"
        ),
        .executableTarget(
            name: "dashboard",
            dependencies: ["SwitchboardClient", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Examples/dashboard"
        ),
        .executableTarget(
            name: "ws-examples",
            dependencies: [
                "WebSockets",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Examples/ws-examples"
        ),
        .testTarget(
            name: "ExamplesTests",
            dependencies: ["AsyncTestSupport", "BrokerProcess"]
        ),
        .executableTarget(
            name: "TLSEcho",
            dependencies: ["WebSockets", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Benchmarks/TLSEcho"
        ),
        .executableTarget(
            name: "ReplayBenchmarks",
            dependencies: [
                "Switchboard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Benchmarks/ReplayBenchmarks"
        ),
        .executableTarget(
            name: "SDKBenchmarks",
            dependencies: [
                "SwitchboardClient",
                "WebSockets",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Benchmarks/SDKBenchmarks"
        ),
        .executableTarget(
            name: "CoreBenchmarks",
            dependencies: [
                "WebSocketCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/CoreBenchmarks"
        ),
    ]
)
