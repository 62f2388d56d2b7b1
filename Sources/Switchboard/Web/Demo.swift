import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// The demo's topics and the access it needs (docs/browser.md).
public enum Demo {
    /// Everything the demo pages use; anonymous clients may publish and subscribe here.
    public static let topics = "demo.>"
    /// The chat rooms, retained so a page resumes across a broker restart.
    public static let chatRule = "demo.chat.> count=1000 age=24h"
    /// The broker's own figures, published every second.
    public static let metricsTopic = "demo.metrics"
}

extension BrokerConfiguration {
    /// With `demo` on: anonymous clients may publish and subscribe on `demo.>` (added to what
    /// anonymous clients may already do), and `demo.chat.>` is retained unless a rule covers it.
    /// `switchboard serve` calls it once every source of settings was applied.
    public mutating func addDemoAccess() {
        guard demo else { return }
        var access = anonymous ?? AnonymousAccess()
        if !access.subscribe.contains(Demo.topics) { access.subscribe.append(Demo.topics) }
        if !access.publish.contains(Demo.topics) { access.publish.append(Demo.topics) }
        anonymous = access
        if case .success(let parsed) = RetentionRules.parse([Demo.chatRule]),
            !replay.rules.contains(where: { $0.pattern.name == "demo.chat.>" })
        {
            replay.rules += parsed.rules
        }
    }
}

extension Broker {
    /// Every second, publishes to `demo.metrics` the open connections, subscriptions, and
    /// messages published and delivered per second since the previous second.
    func publishDemoMetrics() {
        guard let topic = try? Topic(Demo.metricsTopic) else { return }
        let principal = Principal(kind: .anonymous, permissions: Permissions())
        let previous = NIOLockedValueBox<(time: Int64, published: UInt64, delivered: UInt64)?>(nil)
        let loop = group.next()
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
            loop.makeFutureWithTask { [self] in
                let counters = await counters()
                let published = publishedTotals.messages
                let now = clock()
                let last = previous.withLockedValue { value in
                    defer { value = (now, published, counters.delivered) }
                    return value
                }
                func rate(_ count: UInt64, _ before: UInt64?) -> Double {
                    guard let last, let before, now > last.time else { return 0 }
                    return Double(count &- before) * 1000 / Double(now - last.time)
                }
                let figures: [String: Any] = [
                    "time": now, "connections": counters.connections, "subscriptions": counters.subscriptions,
                    "published_per_second": (rate(published, last?.published) * 10).rounded() / 10,
                    "delivered_per_second": (rate(counters.delivered, last?.delivered) * 10).rounded() / 10,
                ]
                guard let json = try? JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]) else { return }
                _ = await publishAwaitingCommit(
                    Publish(id: nil, topic: topic, payload: ByteBuffer(bytes: json), format: .json), from: principal)
            }
        }
        demoMetrics.withLockedValue { $0 = task }
    }
}
