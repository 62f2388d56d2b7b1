// libFuzzer entry point for the broker's configuration: the input as a config file
// (`BrokerConfiguration.apply(configJSON:source:)`, what `apply(configFile:)` runs on the
// file's bytes); byte 0 choosing a key of `BrokerConfiguration.keys` and the rest as its
// value, given as a flag would (`set`) and as its environment variable; the whole input as
// one retention rule (`ReplayRule.parse`).
//
// Checks: every error is one line; a value is taken the same from a flag and from the
// environment; applying a file twice changes nothing more; accepted values are within
// their documented ranges; retention rules print (`description`) to text that parses
// back to the same rules.
import FuzzerSupport
import Foundation
@_spi(Fuzzing) import Switchboard

runFuzzer(fuzz)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = inputBytes(data, size)
    checkFile(bytes)
    if let selector = bytes.first {
        let (key, variable) = BrokerConfiguration.keys[Int(selector) % BrokerConfiguration.keys.count]
        checkValue(key, variable, String(decoding: bytes.dropFirst(), as: UTF8.self))
    }
    checkRule(String(decoding: bytes, as: UTF8.self))
    return 0
}

func checkFile(_ bytes: [UInt8]) {
    var configuration = BrokerConfiguration()
    do {
        try configuration.apply(configJSON: Data(bytes), source: "fuzz.json")
    } catch {
        checkOneLine(error.description, "config file error")
        return
    }
    var again = configuration
    do {
        try again.apply(configJSON: Data(bytes), source: "fuzz.json")
    } catch {
        fatalError("a config file applies once but not twice: \(error)")
    }
    require(again == configuration, "applying a config file twice changes it")
    checkRanges(configuration)
}

func checkValue(_ key: String, _ variable: String, _ text: String) {
    var flag = BrokerConfiguration()
    var environment = BrokerConfiguration()
    let flagError: BrokerConfiguration.Error?
    do {
        try flag.set(key, text, source: "--\(key)")
        flagError = nil
    } catch {
        checkOneLine(error.description, "flag error")
        flagError = error
    }
    do {
        try environment.apply(environment: [variable: text])
        require(flagError == nil, "the environment takes a value the flag refuses")
    } catch {
        checkOneLine(error.description, "environment error")
        require(flagError?.problem == error.problem, "the environment refuses a value differently")
        return
    }
    require(flag == environment, "a flag and the environment set different values")
    checkRanges(flag)
}

/// The documented ranges of the values `BrokerConfiguration.set` accepts.
func checkRanges(_ configuration: BrokerConfiguration) {
    require(!configuration.host.isEmpty && !configuration.database.isEmpty, "empty host or database")
    require((0...65535).contains(configuration.port), "port out of range")
    require(configuration.jwtSecret.map { $0.utf8.count >= 32 } ?? true, "short JWT secret")
    require((1...(1 << 30)).contains(configuration.maxPayload), "max_payload out of range")
    require((1024...(1 << 34)).contains(configuration.maxQueuedBytes), "max_queued_bytes out of range")
    require((1...10_000_000).contains(configuration.maxConnections), "max_connections out of range")
    require((1...1_000_000).contains(configuration.maxSubscriptions), "max_subscriptions out of range")
    require((0...86_400).contains(configuration.heartbeatSeconds), "heartbeat_seconds out of range")
    require((1...10_000_000).contains(configuration.maxConnectionsPerToken), "max_connections_per_token out of range")
    require((0...100_000_000).contains(configuration.requestRate), "request_rate out of range")
    require((1...100_000_000).contains(configuration.requestBurst), "request_burst out of range")
    require((1...100_000_000).contains(configuration.maxTopics), "max_topics out of range")
    require((1...31_536_000).contains(configuration.topicIdleSeconds), "topic_idle_seconds out of range")
    require(configuration.threads.map { (1...1024).contains($0) } ?? true, "threads out of range")
    let replay = configuration.replay
    require(replay.maxBytes == 0 || replay.maxBytes >= 1 << 20, "replay_max_bytes out of range")
    require((1...10_000_000).contains(replay.queueLimit), "replay_queue_limit out of range")
    for pattern in (configuration.anonymous?.subscribe ?? []) + (configuration.anonymous?.publish ?? []) {
        require((try? TopicPattern(pattern)) != nil, "an invalid anonymous pattern was taken")
    }
    // The rules as text, parsed again, are the same rules.
    var reread = BrokerConfiguration()
    do {
        try reread.set("replay_retain", replay.rules.map(\.description).joined(separator: ", "), source: "reread")
    } catch {
        fatalError("printed retention rules do not parse: \(error)")
    }
    require(reread.replay.rules == replay.rules, "printed retention rules parse to other rules")
}

func checkRule(_ text: String) {
    switch ReplayRule.parse(text) {
    case .success(let rule):
        require(rule.maxMessages.map { $0 > 0 } ?? true, "count=0 taken")
        require(rule.maxAgeMilliseconds.map { $0 > 0 } ?? true, "age=0 taken")
        guard case .success(let again) = ReplayRule.parse(rule.description), again == rule else {
            fatalError("rule \(rule) does not parse back from its description")
        }
    case .failure(let error):
        checkOneLine(error.message, "rule error")
    }
}
