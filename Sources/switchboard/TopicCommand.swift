import ArgumentParser
import Foundation

/// `switchboard topic …`: topics of a running broker, through the admin API.
struct TopicCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topic", abstract: "List topics, show one, read or purge its history (admin API).",
        discussion: ExitStatus.help,
        subcommands: [List.self, Show.self, History.self, Purge.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the topics in memory that a pattern matches.",
            discussion: """
                Examples:
                  switchboard topic list
                  switchboard topic list 'chat.>' --server http://broker:8080
                  switchboard topic list --json | jq '.topics[].name'
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "A pattern (default >: every topic).") var pattern: String = ">"
        @Option(help: "At most this many topics (default 1000).") var limit: Int = 1000

        func validate() throws {
            guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be 1 to 10000, not \(limit)") }
        }

        func run() async {
            let client = await admin.client()
            let query = "pattern=\(pattern.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? pattern)&limit=\(limit)"
            let answer = await client.call("GET", "admin/v1/topics?\(query)")
            guard !client.printJSON(answer) else { return }
            let topics = answer["topics"] as? [[String: Any]] ?? []
            Table.print(
                ["TOPIC", "LAST SEQ", "SUBSCRIBERS", "MSG/S", "RETAINED", "BYTES"],
                topics.map(TopicCommand.row))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one topic.",
            discussion: """
                Examples:
                  switchboard topic show chat.room1
                  switchboard topic show orders.42 --json
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The topic.") var topic: String

        func run() async {
            let client = await admin.client()
            let answer = await client.call("GET", "admin/v1/topics/\(AdminClient.segment(topic))")
            guard !client.printJSON(answer) else { return }
            Table.print(["TOPIC", "LAST SEQ", "SUBSCRIBERS", "MSG/S", "RETAINED", "BYTES"], [TopicCommand.row(answer)])
        }
    }

    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a topic's retained messages, oldest first.",
            discussion: """
                Examples:
                  switchboard topic history chat.room1 --last 20
                  switchboard topic history orders.42 --since 100 --limit 50
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The topic.") var topic: String
        @Option(help: "The last N messages.") var last: Int?
        @Option(help: "Messages after this seq.") var since: UInt64?
        @Option(help: "At most this many (default 100, at most 1000).") var limit: Int = 100

        func validate() throws {
            if last != nil, since != nil { throw ValidationError("give --last or --since, not both") }
            if let last, !(1...1000).contains(last) { throw ValidationError("--last must be 1 to 1000, not \(last)") }
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1 to 1000, not \(limit)") }
        }

        func run() async {
            let client = await admin.client()
            var query = "limit=\(limit)"
            if let last { query = "last=\(last)" }
            if let since { query += "&since=\(since)" }
            let answer = await client.call("GET", "admin/v1/topics/\(AdminClient.segment(topic))/history?\(query)")
            guard !client.printJSON(answer) else { return }
            for message in answer["messages"] as? [[String: Any]] ?? [] {
                let time = (message["time"] as? NSNumber).map {
                    ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: $0.doubleValue / 1000))
                } ?? "-"
                let data: String
                if let base64 = message["data_base64"] as? String {
                    data = "base64:" + base64
                } else if let value = message["data"],
                    let encoded = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .withoutEscapingSlashes])
                {
                    data = String(decoding: encoded, as: UTF8.self)
                } else {
                    data = "-"
                }
                print("\(Table.text(message["seq"]))\t\(time)\t\(data)")
            }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a topic's retained messages (its seqs continue; resumers get a gap).",
            discussion: """
                Examples:
                  switchboard topic purge chat.room1
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The topic.") var topic: String

        func run() async {
            let client = await admin.client()
            let answer = await client.call("DELETE", "admin/v1/topics/\(AdminClient.segment(topic))/history")
            guard !client.printJSON(answer) else { return }
            print("purged \(Table.text(answer["purged"])) messages of \(topic) (last seq \(Table.text(answer["last_seq"])))")
        }
    }

    static func row(_ topic: [String: Any]) -> [String] {
        let retained = topic["retained"] as? [String: Any]
        return [
            Table.text(topic["name"]), Table.text(topic["last_seq"]), Table.text(topic["subscribers"]),
            Table.text(topic["messages_per_second"]), Table.text(retained?["count"]), Table.text(retained?["bytes"]),
        ]
    }
}
