import AsyncTestSupport
import Foundation
import Testing
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// Requests that once trapped the broker, over real sockets: each gets its error reply and
/// the broker goes on serving.
@Suite struct BrokerHostileInputTests {
    /// A `since` past Int64.max is refused before it reaches the log: its seqs are SQLite
    /// integers, and such a value would read as "everything" and overflow `baseline + 1`
    /// while resuming.
    @Test func sinceBeyondInt64IsABadRequest() async throws {
        try await TestBroker.with(BrokerReplayTests.retaining("chat.>")) { broker in
            let publisher = try await broker.client()
            for n in 1...3 { try await publisher.publish("chat.a", "\(n)") }
            let subscriber = try await broker.client()
            for request in [
                #"{"op":"sub","topic":"chat.a","id":1,"since":18446744073709551615}"#,
                #"{"op":"sub","topic":"chat.*","id":1,"since":{"chat.a":9223372036854775808}}"#,
            ] {
                let answer = try await subscriber.request(request)
                #expect(answer["op"] == "error" && answer["code"] == "bad_request", "\(answer)")
                #expect((answer["message"] ?? "").contains("9223372036854775807"), "\(answer)")
            }
            // The largest allowed value replays nothing and subscribes.
            let largest = try await subscriber.request(#"{"op":"sub","topic":"chat.a","id":2,"since":9223372036854775807}"#)
            #expect(largest["op"] == "subscribed", "\(largest)")
            try await subscriber.expectNothingPending()
            // Still serving.
            let other = try await broker.client()
            _ = try await other.request(#"{"op":"sub","topic":"chat.a","since":2}"#)
            #expect(try await other.nextJSON().int("seq") == 3)
        }
    }
}
