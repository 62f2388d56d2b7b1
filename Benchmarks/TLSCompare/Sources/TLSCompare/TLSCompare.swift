import ArgumentParser

@main
struct TLSCompare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls-compare",
        abstract: "Our TLS handler (system OpenSSL) against swift-nio-ssl, under the same WebSocket echo server.",
        discussion: """
            Run `serve` pinned to one CPU and `load` pinned to another; Benchmarks/tls-compare.sh \
            does both for each stack and prints the comparison.
            """,
        subcommands: [Serve.self, Load.self]
    )
}
