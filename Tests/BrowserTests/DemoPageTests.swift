import AsyncTestSupport
import BrokerProcess
import BrowserSupport
import Foundation
import Testing

/// The demo page and switchboard.js in a real Chromium against a real `switchboard serve --demo`.
@Suite(.serialized) struct DemoPageTests {
    @Test func twoPagesExchangeChatMessagesThroughTheBroker() async throws {
        try await withDemo { _, broker, tabs in
            let ann = try await tabs.open("\(broker.base)/?room=pair")
            let bob = try await tabs.open("\(broker.base)/?room=pair")
            for page in [ann, bob] { try await page.evaluate(demoState("demo.client.state === 'connected'")) }
            try await sendChat(ann, name: "ann", text: "hello from ann")
            try await bob.evaluate(demoState("demo.chat.some(m => m.name === 'ann' && m.text === 'hello from ann')"))
            try await sendChat(bob, name: "bob", text: "hi ann")
            try await ann.evaluate(demoState("demo.chat.length === 2"))
            let shown = try await ann.evaluate(
                "[...document.querySelectorAll('#messages li .who')].map(e => e.textContent + ':' + e.nextSibling.textContent)")
            #expect(shown.array as? [String] == ["ann:hello from ann", "bob:hi ann"])
        }
    }

    @Test func aPageResumesAcrossABrokerKillShowingEveryMessageOnceInOrder() async throws {
        try await withDemo { _, broker, tabs in
            let reader = try await tabs.open("\(broker.base)/?room=resume")
            try await reader.evaluate(demoState("demo.client.state === 'connected'"))
            for n in 1...3 {
                try await sendChat(reader, name: "ann", text: "m\(n)")
                try await reader.evaluate(demoState("demo.chat.length === \(n)"))
            }
            try await broker.kill()
            try await reader.evaluate(demoState("demo.client.state === 'disconnected'"))
            // Holds the reader's next attempt (its token provider, asked before every attempt,
            // waits) until the other page has published, so those messages come by replay.
            try await reader.evaluate(
                "window.openGate = null; const gate = new Promise(r => window.openGate = r); "
                    + "window.switchboardDemo.client.options.getToken = () => gate.then(() => undefined); true")
            try await broker.restart()
            let writer = try await tabs.open("\(broker.base)/?room=resume")
            try await writer.evaluate(demoState("demo.client.state === 'connected' && demo.chat.length === 3"))
            for n in 4...6 {
                try await sendChat(writer, name: "bob", text: "m\(n)")
                try await writer.evaluate(demoState("demo.chat.length === \(n)"))
            }
            #expect(try await reader.evaluate("window.switchboardDemo.chat.length").int == 3)
            try await reader.evaluate("window.openGate(); true")
            try await reader.evaluate(demoState("demo.chat.length >= 6"))
            let chat = try await reader.evaluate("window.switchboardDemo.chat.map(m => m.seq + ':' + m.text)")
            #expect(chat.array as? [String] == (1...6).map { "\($0):m\($0)" })
            let listed = try await reader.evaluate("document.querySelectorAll('#messages li').length")
            #expect(listed.int == 6)
        }
    }
}
