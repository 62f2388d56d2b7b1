import ArgumentParser
import Foundation
import SwitchboardClient

/// `switchboard pub TOPIC [DATA | -]`: publishes and prints each acked seq; without DATA,
/// each line of standard input.
struct Pub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish to a topic and print the seq of each acknowledged message.",
        discussion: """
            DATA is sent as JSON when it parses as JSON, else as a string; "-" or no DATA publishes \
            each line of standard input. Status 0 when every publish was acknowledged.

            Examples:
              switchboard pub chat.room1 '{"user":"ann","text":"hi"}'
              switchboard pub metrics.cpu 0.42 --count 100 --rate 10
              tail -f app.log | switchboard pub logs.app
              switchboard pub blobs.1 "$(cat note.txt)" --binary --token-file writer.token

            \(ClientConnection.exitStatusHelp)
            """)

    @Argument(help: "A concrete topic.") var topic: String
    @Argument(help: "The data; - or none for each line of standard input.") var data: String?
    @OptionGroup var connection: ClientConnection
    @Flag(help: "Publish the data's bytes as a binary message.") var binary = false
    @Option(help: "Publish DATA this many times (default 1).") var count = 1
    @Option(help: "At most this many publishes per second (default: as fast as acks come).") var rate: Double?

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count \(count): at least 1") }
        if let rate, !(rate > 0) { throw ValidationError("--rate \(rate): must be above 0") }
        if data == nil || data == "-", count != 1 {
            throw ValidationError("--count with standard input: each line is published once")
        }
    }

    func run() async throws {
        let client = await connection.connect()
        let clock = ContinuousClock()
        let start = clock.now
        var sent = 0
        do {
            func publish(_ line: String) async throws {
                if let rate { try await clock.sleep(until: start + .seconds(Double(sent) / rate)) }
                sent += 1
                let seq: UInt64
                if binary {
                    seq = try await client.publish(topic, bytes: Array(line.utf8))
                } else if (try? JSONSerialization.jsonObject(with: Data(line.utf8), options: .fragmentsAllowed)) != nil {
                    seq = try await client.publish(topic, rawJSON: line)
                } else {
                    seq = try await client.publish(topic, text: line)
                }
                Terminal.printUnbuffered("\(seq)")
            }
            if let data, data != "-" {
                for _ in 0..<count { try await publish(data) }
            } else {
                while let line = readLine() { try await publish(line) }
            }
        } catch {
            ClientConnection.exit(error)
        }
        await client.close()
    }
}
