import AsyncTestSupport
import BrokerProcess
import BrowserSupport
import Foundation
import Testing

/// Screenshots of `/` and `/admin` as a newcomer sees them, kept under
/// `.build/browser-artifacts/` (CI keeps them), checked to show what they should.
@Suite(.serialized) struct ScreenshotTests {
    @Test func demoPageShowsTheChatAndAMovingChart() async throws {
        try await withDemo { _, broker, tabs in
            let page = try await tabs.open("\(broker.base)/?room=lobby")
            try await setViewport(page)
            try await sendChat(page, name: "ann", text: "Hello from the screenshot test")
            // Three figures from the broker: the chart has a line, not a dot.
            try await page.evaluate(demoState("demo.chat.length === 1 && demo.metrics.length >= 3"))
            let text = try #require(try await page.evaluate("document.body.innerText").string)
            for expected in ["Switchboard demo", "Chat room", "Hello from the screenshot test", "Live broker dashboard", "connected"] {
                #expect(text.contains(expected), "\(expected) not on the page: \(text)")
            }
            #expect(text.range(of: #"\d+ connections, \d+ subscriptions"#, options: .regularExpression) != nil, "\(text)")
            try checkAndKeep(try await page.screenshot(), as: "demo.png")
            try await checkAccessible(page)
            try await checkPhone(page, as: "demo-phone.png")
        }
    }

    @Test func adminPageListsConnectionsTopicsAndTokens() async throws {
        try await withDemo { _, broker, tabs in
            let demo = try await tabs.open("\(broker.base)/?room=lobby")
            try await demo.evaluate(demoState("demo.metrics.length >= 1"))
            let page = try await tabs.open("\(broker.base)/admin")
            try await setViewport(page)
            try await signInAndTail(page, token: try broker.adminToken, topic: "demo.metrics")
            let text = try #require(try await page.evaluate("document.body.innerText").string)
            for expected in ["Switchboard admin", "signed in", "Connections", "demo.metrics", "tok_", "Revoke", "demo.metrics #"] {
                #expect(text.contains(expected), "\(expected) not on the page: \(text)")
            }
            try checkAndKeep(try await page.screenshot(), as: "admin.png")
            try await checkAccessible(page)
            try await checkPhone(page, as: "admin-phone.png")
        }
    }

    private func setViewport(_ page: BrowserPage, width: Int = 1100, height: Int = 820, mobile: Bool = false) async throws {
        _ = try await page.send(
            "Emulation.setDeviceMetricsOverride", ["width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile])
    }

    /// Every form control has a label (or an aria-label) and every button a name: what a
    /// screen reader announces and a keyboard user tabs to.
    private func checkAccessible(_ page: BrowserPage) async throws {
        let unnamed = try await page.evaluate(
            """
            [...document.querySelectorAll('input, button, select, canvas')].filter(e =>
              !(e.labels?.length || e.getAttribute('aria-label') || (e.tagName === 'BUTTON' && e.textContent.trim()))
            ).map(e => e.outerHTML.slice(0, 80))
            """)
        #expect(unnamed.array?.isEmpty == true, "controls without a name: \(unnamed.array ?? [])")
    }

    /// At a phone's width (390 px) the page fits: nothing scrolls sideways.
    private func checkPhone(_ page: BrowserPage, as name: String) async throws {
        try await setViewport(page, width: 390, height: 844, mobile: true)
        let fits = try await page.evaluate(
            "new Promise(r => requestAnimationFrame(() => r(document.documentElement.scrollWidth <= window.innerWidth)))")
        #expect(fits.bool == true, "\(name): wider than the phone's screen")
        let png = try await page.screenshot()
        try FileManager.default.createDirectory(at: artifactsDirectory, withIntermediateDirectories: true)
        try png.write(to: artifactsDirectory.appendingPathComponent(name))
    }

    /// A PNG of the viewport's size with more than a blank page's bytes; written to the artifacts.
    private func checkAndKeep(_ png: Data, as name: String) throws {
        let bytes = [UInt8](png)
        #expect(bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "not a PNG")
        #expect(bytes.count > 33 && Array(bytes[12..<16]) == Array("IHDR".utf8))
        let width = bytes[16..<20].reduce(0) { $0 << 8 | Int($1) }
        let height = bytes[20..<24].reduce(0) { $0 << 8 | Int($1) }
        #expect(width == 1100 && height == 820, "\(width)×\(height)")
        // A blank page of this size compresses to a few kilobytes; text, tables and a chart do not.
        #expect(png.count > 20_000, "\(name) is \(png.count) bytes: blank?")
        try FileManager.default.createDirectory(at: artifactsDirectory, withIntermediateDirectories: true)
        try png.write(to: artifactsDirectory.appendingPathComponent(name))
    }
}
