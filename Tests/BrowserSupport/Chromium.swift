import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers

/// A headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) in a temporary
/// profile, driven over the Chrome DevTools Protocol. Its DevTools URL is read from the
/// line it prints to stderr once listening.
public final class Chromium: @unchecked Sendable {  // `Process` is not Sendable; it is only read and killed.
    public let process: Process
    public let stderr: ProcessOutput
    public let devTools: CDPConnection
    private let profile: URL

    /// The executable: `$CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
    public static let executable: URL? = {
        if let path = ProcessInfo.processInfo.environment["CHROMIUM"] { return URL(fileURLWithPath: path) }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            for name in ["chromium", "chromium-browser"] {
                let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            }
        }
        return nil
    }()

    public static func launch() async throws -> Chromium {
        guard let executable else { throw TestFailure("chromium is not installed: run scripts/setup.sh (or set CHROMIUM)") }
        let profile = try makeTemporaryDirectory()
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "--headless=new", "--no-sandbox", "--remote-debugging-port=0", "--user-data-dir=\(profile.path)",
            "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows", "--hide-scrollbars", "--mute-audio", "about:blank",
        ]
        let stderr = ProcessOutput()
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        readUntilEnd(of: pipe, stderr.append)
        do {
            let url = try await stderr.wait(for: "Chromium's DevTools URL", timeout: .seconds(60)) { text in
                text.split(separator: "\n").first { $0.hasPrefix("DevTools listening on ") }
                    .map { String($0.dropFirst("DevTools listening on ".count)).trimmingCharacters(in: .whitespaces) }
            }
            return Chromium(process: process, stderr: stderr, devTools: try await CDPConnection.connect(to: url), profile: profile)
        } catch {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw error
        }
    }

    private init(process: Process, stderr: ProcessOutput, devTools: CDPConnection, profile: URL) {
        self.process = process
        self.stderr = stderr
        self.devTools = devTools
        self.profile = profile
    }

    /// A new tab (target) attached over the browser's connection, with Page and Runtime on.
    public func newPage() async throws -> BrowserPage {
        let created = try await devTools.send("Target.createTarget", ["url": "about:blank"])
        let targetID = try created.string("targetId")
        let attached = try await devTools.send("Target.attachToTarget", ["targetId": targetID, "flatten": true])
        let page = BrowserPage(connection: devTools, targetID: targetID, session: try attached.string("sessionId"))
        _ = try await page.send("Page.enable")
        _ = try await page.send("Runtime.enable")
        return page
    }

    /// Kills the browser and removes its profile.
    public func close() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: profile)
    }
}

/// One tab of a `Chromium`.
public struct BrowserPage: Sendable {
    public let connection: CDPConnection
    public let targetID: String
    public let session: String

    public func send(_ method: String, _ parameters: [String: any Sendable] = [:]) async throws -> CDPResult {
        try await connection.send(method, parameters, session: session)
    }

    /// Loads `url` and returns once its load event fired (module scripts have run by then).
    public func navigate(_ url: String) async throws {
        let loaded = connection.expectEvent("Page.loadEventFired", session: session)
        let result = try await send("Page.navigate", ["url": url])
        if let error = result.object["errorText"] as? String { throw TestFailure("navigating to \(url): \(error)") }
        _ = try await loaded.value(timeout: .seconds(30))
    }

    /// Evaluates `expression` in the page, awaiting it when it is a promise, and returns its
    /// value as JSON-compatible Foundation objects. A thrown exception fails with its text.
    @discardableResult
    public func evaluate(_ expression: String, timeout: Duration = .seconds(30)) async throws -> CDPValue {
        let result = try await withTimeout("the page to evaluate \(expression.prefix(80))", timeout) {
            try await send("Runtime.evaluate", ["expression": expression, "awaitPromise": true, "returnByValue": true])
        }
        if let exception = result.object["exceptionDetails"] as? [String: Any] {
            let description = (exception["exception"] as? [String: Any])?["description"] as? String
            throw TestFailure("the page threw: \(description ?? "\(exception["text"] ?? exception)")")
        }
        return CDPValue((result.object["result"] as? [String: Any])?["value"])
    }

    /// A PNG of the page as it is drawn.
    public func screenshot() async throws -> Data {
        let result = try await send("Page.captureScreenshot", ["format": "png"])
        guard let data = Data(base64Encoded: try result.string("data")) else { throw TestFailure("the screenshot is not base64") }
        return data
    }

    public func close() async throws {
        _ = try await connection.send("Target.closeTarget", ["targetId": targetID])
    }
}
