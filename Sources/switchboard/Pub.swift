import ArgumentParser
import Foundation
import SwitchboardClient

/// `switchboard pub TOPIC [DATA | -]`: publishes and prints each acked seq.
struct Pub: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish to a topic and print the seq of each acknowledged message.",
        discussion: """
            DATA is sent as JSON when it parses as JSON, else as a string; "-" publishes each line \
            of standard input. Exit status: 0 when every publish was acknowledged, 64 bad argument, \
            69 broker unreachable or the connection lost, 77 token or topic refused, 65 other refusals.
            """)

    @Argument(help: "A concrete topic.") var topic: String
    @Argument(help: "The data, or - for each line of standard input.") var data: String
    @OptionGroup var connection: ClientConnection
    @Flag(help: "Publish the data's bytes as a binary message.") var binary = false
    @Option(help: "Publish DATA this many times (default 1).") var count = 1
    @Option(help: "At most this many publishes per second (default: as fast as acks come).") var rate: Double?

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count \(count): at least 1") }
        if let rate, !(rate > 0) { throw ValidationError("--rate \(rate): must be above 0") }
        if data == "-", count != 1 { throw ValidationError("--count with -: each line of standard input is published once") }
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
            if data == "-" {
                while let line = readLine() { try await publish(line) }
            } else {
                for _ in 0..<count { try await publish(data) }
            }
        } catch {
            ClientConnection.exit(error)
        }
        await client.close()
    }
}
