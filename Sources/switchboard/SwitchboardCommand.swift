import ArgumentParser
import Switchboard

@main
struct SwitchboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchboard",
        abstract: "A WebSocket pub/sub broker.",
        discussion: """
            The admin commands (topic, retention, token, stats, connections) talk to a \
            running broker's admin API: --server URL, else SWITCHBOARD_URL, else the broker serving \
            --database (./switchboard.db), named in <database>.admin-url while it runs, else \
            http://127.0.0.1:8080; and --token (or SWITCHBOARD_ADMIN_TOKEN; default: the file \
            <database>.admin-token).

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
