import ArgumentParser
import Foundation
import SwitchboardClient

/// `switchboard sub PATTERN`: prints each message of a topic or pattern, one line each, until
/// interrupted, reconnecting and resuming by itself (every seq once, in order; a gap line
/// for what cannot be replayed).
struct Sub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the messages of a topic or pattern until interrupted.",
        discussion: """
            Lines: TOPIC SEQ DATA (DATA as published: JSON text, or base64 for binary), and \
            "gap TOPIC FROM-TO" for messages that cannot be delivered. With --json: one object per \
            line, {"topic","seq","time","data"} ("data_base64" for binary) or {"gap":{…}}. \
            Seqs count per topic, so --since N > 0 takes one topic; on a pattern, --since 0 \
            replays every retained message and --last N the last N of each topic.

            Examples:
              switchboard sub chat.room1
              switchboard sub 'chat.*' --last 10 --json
              switchboard sub orders.42 --since 120 --token-file reader.token

            \(ClientConnection.exitStatusHelp)
            """)

    @Argument(help: "Topic or pattern (chat.*, chat.>).") var pattern: String
    @OptionGroup var connection: ClientConnection
    @Option(help: "Replay every retained message after this seq first (0: all retained; a pattern takes 0 only).")
    var since: UInt64?
    @Option(help: "Replay the last N retained messages of each matching topic first.")
    var last: UInt64?
    @Flag(help: "One JSON object per line.") var json = false

    func validate() throws {
        if since != nil, last != nil { throw ValidationError("give --since or --last, not both") }
        if let since, since > 0, pattern.contains("*") || pattern.contains(">") {
            throw ValidationError(
                "--since \(since) with a pattern: seqs count per topic; use --since 0 (all retained) or --last N")
        }
    }

    func run() async throws {
        let start: StartPosition =
            switch (since, last) {
            case (_, let count?): .last(count)
            case (nil, nil): .latest
            case (0, _): .beginning
            case (let seq?, _): .seq(seq)
            }
        let client = await connection.connect()
        do {
            for try await event in try await client.subscribe(pattern, from: start) {
                Terminal.printUnbuffered(json ? Self.json(event) : Self.line(event))
            }
        } catch {
            ClientConnection.exit(error)
        }
    }

    static func line(_ event: SubscriptionEvent) -> String {
        switch event {
        case .message(let message):
            return "\(message.topic) \(message.seq) \(message.json ?? Data(message.bytes).base64EncodedString())"
        case .gap(let gap): return "gap \(gap.topic) \(gap.from)-\(gap.to)"
        }
    }

    static func json(_ event: SubscriptionEvent) -> String {
        switch event {
        case .message(let message):
            let head = #"{"topic":"\#(message.topic)","seq":\#(message.seq),"time":\#(message.timeMilliseconds),"#
            if let json = message.json { return head + #""data":\#(json)}"# }
            return head + #""data_base64":"\#(Data(message.bytes).base64EncodedString())"}"#
        case .gap(let gap):
            return #"{"gap":{"topic":"\#(gap.topic)","from":\#(gap.from),"to":\#(gap.to),"reason":"\#(gap.reason)"}}"#
        }
    }
}
