import ArgumentParser

@main
struct SwitchboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A WebSocket pub/sub broker.",
        subcommands: [Serve.self, TokenCommand.self, Sub.self, Pub.self],
        defaultSubcommand: Serve.self
    )
}
