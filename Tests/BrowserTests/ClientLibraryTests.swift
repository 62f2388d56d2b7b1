import AsyncTestSupport
import BrokerProcess
import BrowserSupport
import Foundation
import Testing

/// switchboard.js's own behaviour, run in Chromium against a real broker: the backoff's
/// bounds, the resume map, gap events (announced, unannounced, history lost), acks and
/// binary messages.
@Suite(.serialized) struct ClientLibraryTests {
    @Test func backoffStaysWithinFullJitterBoundsAndWakesOnOnlineAndVisibility() async throws {
        try await withDemo { _, broker, tabs in
            let page = try await tabs.open("\(broker.base)/")
            let result = try await page.evaluate(
                """
                (async () => {
                  const sb = await import('/client/switchboard.js');
                  const bounds = [];
                  for (let n = 0; n < 12; n++) {
                    bounds.push([sb.backoffDelay(n, sb.defaultBackoff, () => 0), sb.backoffDelay(n, sb.defaultBackoff, () => 0.999999)]);
                  }
                  // A refused token (401) is retried with backoff: the waits it announces.
                  const retries = await new Promise((resolve) => {
                    const seen = [];
                    const client = new sb.Switchboard('/', { token: 'sb_refused', backoff: { initial: 20, max: 80 }, random: () => 1 });
                    client.addEventListener('state', ({ detail }) => {
                      if (detail.state !== 'disconnected') return;
                      seen.push(detail.retryIn);
                      if (seen.length === 5) { client.close(); resolve(seen); }
                    });
                  });
                  // Waiting a minute to retry; `online` and a page becoming visible reconnect at once.
                  const woken = [];
                  for (const wake of [() => window.dispatchEvent(new Event('online')), () => document.dispatchEvent(new Event('visibilitychange'))]) {
                    let refuse = true;
                    const client = new sb.Switchboard('/', { getToken: async () => (refuse ? 'sb_refused' : undefined), backoff: { initial: 60000, max: 60000 }, random: () => 1 });
                    await new Promise((resolve) => client.addEventListener('state', ({ detail }) => { if (detail.state === 'disconnected') resolve(); }));
                    refuse = false;
                    const started = performance.now();
                    wake();
                    await new Promise((resolve) => client.addEventListener('state', ({ detail }) => { if (detail.state === 'connected') resolve(); }));
                    woken.push(performance.now() - started < 30000);
                    client.close();
                  }
                  return { bounds, retries, woken };
                })()
                """)
            let object = try #require(result.object)
            let bounds = try #require(object["bounds"] as? [[Double]])
            for (attempt, pair) in bounds.enumerated() {
                let ceiling = min(20000, 500 * pow(2, Double(attempt)))
                #expect(pair[0] == 0)
                #expect(pair[1] <= ceiling && pair[1] > ceiling * 0.999, "attempt \(attempt): \(pair)")
            }
            #expect(object["retries"] as? [Double] == [20, 40, 80, 80, 80])
            #expect(object["woken"] as? [Bool] == [true, true])
        }
    }

    @Test func resumeMapGapsAcksAndBinaryAgainstARealBroker() async throws {
        try await withDemo { _, broker, tabs in
            let page = try await tabs.open("\(broker.base)/")
            let result = try await page.evaluate(
                """
                (async () => {
                  const sb = await import('/client/switchboard.js');
                  const take = async (sub, n) => {
                    const events = [];
                    for await (const event of sub) { events.push(event); if (events.length === n) break; }
                    return events;
                  };
                  const describe = (e) => e.type === 'gap' ? `gap ${e.from}-${e.to} ${e.reason}` : `message ${e.seq} ${JSON.stringify(e.data)}`;
                  const client = new sb.Switchboard('/');
                  const out = {};

                  // Resume map: per topic, the last seq delivered; the next sub asks for what follows.
                  const all = client.subscribe('demo.unit.>', { from: 'latest' });
                  await all.ready;
                  const acks = [
                    await client.publish('demo.unit.a', { n: 1 }, { ack: true }),
                    await client.publish('demo.unit.a', { n: 2 }, { ack: true }),
                    await client.publish('demo.unit.b', 'text', { ack: true }),
                    await client.publish('demo.unit.c', new Uint8Array([1, 2, 255]), { ack: true }),
                  ];
                  const events = await take(all, 4);
                  out.acks = acks;
                  out.events = events.map(e => [e.type, e.topic, e.seq, e.binary ? Array.from(new Uint8Array(e.binary)) : e.data]);
                  out.positions = Object.fromEntries(all.positions);
                  out.resume = all.request('x');

                  // Announced gap: a topic the broker does not retain, asked from seq 0.
                  for (let i = 0; i < 3; i++) await client.publish('demo.unit.nr', i, { ack: true });
                  const fromStart = client.subscribe('demo.unit.nr', { from: { seq: 0 } });
                  const [gap] = await take(fromStart, 1);
                  out.gap = `${gap.type} ${gap.from}-${gap.to} ${gap.reason}`;

                  // Unannounced jump and a duplicate, as the client sees them.
                  const jumpy = client.subscribe('demo.unit.j', { from: 'latest' });
                  jumpy.positions.set('demo.unit.j', 5);
                  for (const seq of [9, 9, 10]) jumpy.message({ topic: 'demo.unit.j', seq, time: 0, data: seq, binary: null }, false);
                  out.jumpy = (await take(jumpy, 3)).map(describe);

                  // History lost: positions saved in another epoch (a replaced database).
                  await client.publish('demo.chat.unit', 'one', { ack: true });
                  await client.publish('demo.chat.unit', 'two', { ack: true });
                  localStorage.setItem('switchboard:unit:demo.chat.unit', JSON.stringify({ epoch: 'another-history', positions: { 'demo.chat.unit': 5 } }));
                  const saved = new sb.Switchboard('/', { persist: 'unit' });
                  const resumed = saved.subscribe('demo.chat.unit', { from: 'latest' });
                  out.history = (await take(resumed, 3)).map(describe);
                  saved.flush();
                  const stored = JSON.parse(localStorage.getItem('switchboard:unit:demo.chat.unit'));
                  out.stored = [stored.epoch !== 'another-history' && typeof stored.epoch === 'string', stored.positions];
                  saved.close();

                  // A refused publish rejects with the broker's code.
                  out.refused = await client.publish('other.topic', 1, { ack: true }).then(() => 'acked', e => e.code);
                  client.close();
                  return out;
                })()
                """)
            let out = try #require(result.object)
            #expect(out["acks"] as? [Int] == [1, 2, 1, 1])
            let events = try #require(out["events"] as? [[Any]])
            #expect(events.map { "\($0[0]) \($0[1]) \($0[2])" } == [
                "message demo.unit.a 1", "message demo.unit.a 2", "message demo.unit.b 1", "message demo.unit.c 1",
            ])
            #expect((events[1][3] as? [String: Int]) == ["n": 2])
            #expect(events[2][3] as? String == "text")
            #expect(events[3][3] as? [Int] == [1, 2, 255])
            #expect(out["positions"] as? [String: Int] == ["demo.unit.a": 2, "demo.unit.b": 1, "demo.unit.c": 1])
            let resume = try #require(out["resume"] as? [String: Any])
            #expect(resume["since"] as? [String: Int] == ["demo.unit.a": 2, "demo.unit.b": 1, "demo.unit.c": 1])
            #expect(resume["epoch"] is String)
            #expect(out["gap"] as? String == "gap 1-3 missed")
            #expect(out["jumpy"] as? [String] == ["gap 6-8 unannounced", "message 9 9", "message 10 10"])
            #expect(out["history"] as? [String] == ["gap 1-5 historyLost", "message 1 \"one\"", "message 2 \"two\""])
            let stored = try #require(out["stored"] as? [Any])
            #expect(stored[0] as? Bool == true)
            #expect(stored[1] as? [String: Int] == ["demo.chat.unit": 2])
            #expect(out["refused"] as? String == "forbidden")
        }
    }
}
