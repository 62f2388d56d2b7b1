import ArgumentParser
import Switchboard

@main
struct SwitchboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A WebSocket pub/sub broker.",
        discussion: """
            The admin commands (topic, retention, token with --server, stats, connections) talk to a \
            running broker's admin API: --server URL (or SWITCHBOARD_URL; default http://127.0.0.1:8080) \
            and --token (or SWITCHBOARD_ADMIN_TOKEN; default: the file <database>.admin-token).

            \(ExitStatus.help)
            """,
        version: SwitchboardVersion.current,
        subcommands: [
            Serve.self, TokenCommand.self, TopicCommand.self, RetentionCommand.self, StatsCommand.self,
            ConnectionsCommand.self, ReadyCommand.self, BackupCommand.self, Sub.self, Pub.self,
        ],
        defaultSubcommand: Serve.self
    )
}
