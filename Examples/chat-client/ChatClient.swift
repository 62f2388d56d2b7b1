import ArgumentParser
import Foundation
import SwitchboardClient

/// A terminal chat on the SDK: each line of standard input goes to the room, every message
/// of the room is printed; it resumes by itself after the broker restarts and says when
/// messages were missed.
@main
struct ChatClient: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-client", abstract: "Chat in a room of a Switchboard broker.")

    @Option(help: "Broker URL.") var url = "ws://127.0.0.1:8080/"
    @Option(help: "Token (default: SWITCHBOARD_TOKEN).") var token: String?
    @Option(help: "Room name: the topic is chat.ROOM.") var room = "lobby"
    @Option(help: "Your name.") var name = ProcessInfo.processInfo.environment["USER"] ?? "anonymous"

    struct Line: Codable {
        var user: String
        var text: String
    }

    func run() async throws {
        let secret = token ?? ProcessInfo.processInfo.environment["SWITCHBOARD_TOKEN"]
        let client: SwitchboardClient
        do {
            client = try SwitchboardClient(url: url, token: secret.map { .static($0) } ?? .none)
        } catch {
            throw ValidationError("\(error)")
        }
        let topic = "chat.\(room)"
        let subscription = try await client.subscribe(topic, from: .latest)
        let printer = Task {
            for try await event in subscription {
                switch event {
                case .message(let message):
                    let line = try? message.decode(Line.self)
                    print("[\(line?.user ?? "?")] \(line?.text ?? message.json ?? "")")
                case .gap(let gap):
                    print("… \(gap.to - gap.from + 1) messages missed (\(gap.reason))")
                }
            }
        }
        while let text = readLine() {
            do {
                try await client.publish(topic, json: Line(user: name, text: text))
            } catch {
                print("not sent: \(error)")
            }
        }
        printer.cancel()
        await client.close()
    }
}
