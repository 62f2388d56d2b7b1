import AsyncTestSupport
import BrokerProcess
import BrowserSupport
import Foundation
import NIOConcurrencyHelpers
import Testing

// The browser suites share one Chromium per test process (it takes seconds to start on a
// small machine); each test opens its own tabs and its own broker.

enum SharedBrowser {
    private static let launched = NIOLockedValueBox<Task<Chromium, any Error>?>(nil)
    private static let pid = NIOLockedValueBox<pid_t>(0)

    /// The browser of this test process, launched by the first test that asks; killed at exit.
    static func get() async throws -> Chromium {
        let task = launched.withLockedValue { task in
            if let task { return task }
            let started = Task {
                let browser = try await Chromium.launch()
                pid.withLockedValue { $0 = browser.process.processIdentifier }
                return browser
            }
            task = started
            atexit { SharedBrowser.killAtExit() }
            return started
        }
        return try await task.value
    }

    private static func killAtExit() {
        let running = pid.withLockedValue { $0 }
        if running > 0 { kill(running, SIGKILL) }
    }
}

/// `switchboard serve --demo` of this build in a temporary directory; `restart` starts a new
/// process on the same port and database.
final class DemoBroker: @unchecked Sendable {
    let directory: URL
    private(set) var process: SwitchboardProcess
    private(set) var port: Int

    init() async throws {
        directory = try makeTemporaryDirectory()
        process = try SwitchboardProcess.start(Self.arguments(port: 0), in: directory)
        port = try await process.listeningPort()
    }

    private static func arguments(port: Int) -> [String] {
        ["serve", "--demo", "--host", "127.0.0.1", "--port", String(port)]
    }

    var base: String { "http://127.0.0.1:\(port)" }

    var adminToken: String {
        get throws {
            try String(contentsOf: directory.appendingPathComponent("switchboard.db.admin-token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// SIGKILL; waits for the process to end.
    func kill() async throws {
        process.kill()
        _ = try await process.exitStatus()
    }

    /// A new process on the same port and files (after `kill`).
    func restart() async throws {
        process = try SwitchboardProcess.start(Self.arguments(port: port), in: directory)
        #expect(try await process.listeningPort() == port)
    }

    func stop() async {
        process.terminate()
        _ = try? await process.exitStatus()
        process.kill()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs `body` with the shared browser and a fresh demo broker; closes the tabs it opened.
func withDemo<T>(_ body: (Chromium, DemoBroker, Tabs) async throws -> T) async throws -> T {
    let browser = try await SharedBrowser.get()
    let broker = try await DemoBroker()
    let tabs = Tabs(browser)
    do {
        let result = try await body(browser, broker, tabs)
        await tabs.closeAll()
        await broker.stop()
        return result
    } catch {
        await tabs.closeAll()
        await broker.stop()
        throw error
    }
}

/// The tabs one test opened.
final class Tabs: @unchecked Sendable {
    private let browser: Chromium
    private var pages: [BrowserPage] = []

    init(_ browser: Chromium) { self.browser = browser }

    func open(_ url: String) async throws -> BrowserPage {
        let page = try await browser.newPage()
        pages.append(page)
        try await page.navigate(url)
        return page
    }

    func closeAll() async {
        for page in pages { try? await page.close() }
        pages = []
    }
}

/// A JavaScript expression: a promise resolving once `condition` (an expression over the
/// page's `window.switchboardDemo` as `demo`) holds, checked whenever the demo's state
/// changes; rejects after `timeout` ms naming the condition.
func demoState(_ condition: String, timeout: Int = 20000) -> String {
    // The condition first: a page that never answers is reported by the expression's start.
    """
    /* \(condition.replacingOccurrences(of: "*/", with: "* /")) */ new Promise((resolve, reject) => {
      const demo = window.switchboardDemo;
      const check = () => { try { if (\(condition)) { demo.listeners.delete(check); resolve(true); } } catch (e) { reject(e); } };
      demo.listeners.add(check);
      setTimeout(() => { demo.listeners.delete(check); reject(new Error('timed out waiting for: ' + \(jsString(condition)) + ' chat=' + JSON.stringify(demo.chat) + ' state=' + demo.client.state)); }, \(timeout));
      check();
    })
    """
}

/// `text` as a JavaScript string literal.
func jsString(_ text: String) -> String {
    let data = try! JSONSerialization.data(withJSONObject: [text])
    return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
}

/// Types into the demo's chat form and submits it, as a person would.
func sendChat(_ page: BrowserPage, name: String, text: String) async throws {
    try await page.evaluate(
        """
        (() => {
          document.getElementById('name').value = \(jsString(name));
          document.getElementById('text').value = \(jsString(text));
          document.getElementById('chat-form').requestSubmit();
          return true;
        })()
        """)
}

/// Fills in the admin page's token and tail forms and submits them, as a person would;
/// returns once the page has loaded with the token and shown a tailed message.
func signInAndTail(_ page: BrowserPage, token: String, topic: String) async throws {
    try await page.evaluate(
        """
        new Promise((resolve, reject) => {
          const admin = window.switchboardAdmin;
          const check = () => { if (admin.loaded >= 1 && admin.tail.length >= 1) resolve(true); };
          admin.listeners.add(check);
          setTimeout(() => reject(new Error('the admin page did not load: ' + document.getElementById('error').textContent)), 20000);
          document.getElementById('token').value = \(jsString(token));
          document.getElementById('token-form').requestSubmit();
          document.getElementById('tail-topic').value = \(jsString(topic));
          document.getElementById('tail-form').requestSubmit();
        })
        """)
}

/// Where screenshots go: `.build/browser-artifacts/` of the package (CI keeps it).
let artifactsDirectory: URL = {
    let package = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    return package.appendingPathComponent(".build/browser-artifacts")
}()
