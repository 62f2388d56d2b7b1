import ArgumentParser
import Foundation

/// `switchboard retention show|set`: the replay log's retention rules, through the admin API.
struct RetentionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention", abstract: "Show or replace the replay log's retention rules (admin API).",
        discussion: ExitStatus.help, subcommands: [Show.self, Replace.self])

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the rules in force and where they come from (the store, or replay_retain).",
            discussion: """
                Examples:
                  switchboard retention show
                  switchboard retention show --json
                """)
        @OptionGroup var admin: AdminOptions

        func run() async {
            let client = await admin.client()
            let answer = await client.call("GET", "admin/v1/retention")
            guard !client.printJSON(answer) else { return }
            RetentionCommand.print(answer)
        }
    }

    struct Replace: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Replace the rules: stored, they outlast restarts and win over replay_retain from now on.",
            discussion: """
                Each rule is PATTERN [count=N] [age=DURATION] (DURATION: ms, s, m, h or d), as in \
                replay_retain; first match wins. One rule per argument, or several separated by commas.
                Publishes from now on follow the new rules; the pruner applies them within a second.

                Examples:
                  switchboard retention set 'chat.> count=10000 age=24h' 'orders.* age=7d' 'audit.>'
                  switchboard retention set 'chat.> count=100, audit.>' --json
                  switchboard retention set --none
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The rules, in order.") var rules: [String] = []
        @Flag(help: "Retain no topic from now on (what is stored stays until the size cap takes it).") var none = false

        func validate() throws {
            if none, !rules.isEmpty { throw ValidationError("give rules or --none, not both") }
            if !none, rules.isEmpty { throw ValidationError("give at least one rule, or --none to retain nothing") }
        }

        func run() async {
            let client = await admin.client()
            let texts = rules.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }
            let answer = await client.call("PUT", "admin/v1/retention", body: ["rules": texts])
            guard !client.printJSON(answer) else { return }
            RetentionCommand.print(answer)
        }
    }

    /// The human form of an answer of `/admin/v1/retention`.
    static func print(_ answer: [String: Any]) {
        let rules = answer["rules"] as? [String] ?? []
        if rules.isEmpty { Swift.print("no topic is retained") }
        for rule in rules { Swift.print(rule) }
        let source = answer["source"] as? String == "store" ? "set at run time (stored)" : "from replay_retain"
        Swift.print(
            "\(source); max_bytes \(Table.text(answer["max_bytes"])), queue_limit \(Table.text(answer["queue_limit"]))")
    }
}
