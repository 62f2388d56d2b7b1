import AsyncTestSupport
import BrokerProcess
import Foundation
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// deploy/switchboard.json is the documented example config: it loads, sets every key,
/// and matches the built-in defaults.
@Suite struct DeployConfigTests {
    static let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/switchboard.json")

    @Test func exampleConfigLoadsAndMatchesDefaults() throws {
        var configuration = BrokerConfiguration()
        try configuration.apply(configFile: Self.file.path)
        #expect(configuration == BrokerConfiguration())
    }

    @Test func exampleConfigNamesEveryKey() throws {
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.file)) as? [String: Any])
        #expect(Set(object.keys) == Set(BrokerConfiguration.keys.map(\.key)))
    }

    @Test func badValuesNameKeyAndSource() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("c.json")
        for (json, key) in [
            (#"{"colour":"blue"}"#, "colour"), (#"{"port":"http"}"#, "port"),
            (#"{"anonymous_subscribe":["ok.>","a.>.b"]}"#, "anonymous_subscribe"),
            (#"{"max_queued_bytes":{"a":1}}"#, "max_queued_bytes"),
            (#"{"max_topics":0}"#, "max_topics"), (#"{"topic_idle_seconds":0}"#, "topic_idle_seconds"),
            (#"{"request_rate":-1}"#, "request_rate"), (#"{"request_burst":0}"#, "request_burst"),
            (#"{"max_connections_per_token":"many"}"#, "max_connections_per_token"),
            (#"{"cluster":"http://127.0.0.1:6379"}"#, "cluster"), (#"{"cluster":"redis://h:0"}"#, "cluster"),
        ] {
            try Data(json.utf8).write(to: file)
            var configuration = BrokerConfiguration()
            do {
                try configuration.apply(configFile: file.path)
                Issue.record("\(json) was accepted")
            } catch {
                #expect(error.key == key && error.source == file.path, "\(error)")
                #expect("\(error)".contains(file.path) && "\(error)".contains(key))
            }
        }
    }

    /// Every error is one line: a value or key with a line break is shown escaped.
    @Test func errorsEchoingLineBreaksAreOneLine() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("c.json")
        for json in [
            #"{"port":"80\n80"}"#, #"{"a\r\nb":1}"#, #"{"anonymous_publish":["a\nb"]}"#,
            #"{"log_level":"info\n"}"#, #"{"replay_retain":"chat.>\ncount=1"}"#, #"{"replay_retain":"a count=1\n"}"#,
            #"{"replay_queue_limit":"\r"}"#, #"{"cluster":"redis://h/1\n2"}"#, #"{"cluster":"redis://h:63\r79"}"#,
        ] {
            try Data(json.utf8).write(to: file)
            var configuration = BrokerConfiguration()
            do {
                try configuration.apply(configFile: file.path)
                Issue.record("\(json) was accepted")
            } catch {
                let shown = "\(error)"
                let lines = shown.split(whereSeparator: \.isNewline).count
                #expect(lines == 1, "\(json): \(shown)")
                #expect(shown.contains(#"\n"#) || shown.contains(#"\r"#), "\(json): \(shown)")
            }
        }
    }
}
