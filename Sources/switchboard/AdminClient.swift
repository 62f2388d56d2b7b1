import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where the admin commands find the broker and their token, and how they print.
struct AdminOptions: ParsableArguments {
    @Option(
        help: """
            The broker's URL (default $SWITCHBOARD_URL, else the broker serving --database, named in \
            <database>.admin-url while it runs, else http://127.0.0.1:8080).
            """)
    var server: String?
    @Option(help: "Admin token (default $SWITCHBOARD_ADMIN_TOKEN, else the file <database>.admin-token).")
    var token: String?
    @Option(help: "The store whose broker and admin token file are used (default ./switchboard.db, or $SWITCHBOARD_DATABASE).")
    var database: String?
    @Flag(help: "Print JSON as the API returns it, for scripts.") var json = false

    private var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The server given by flag or environment, nil when neither gives one.
    var givenServer: String? { server ?? environment["SWITCHBOARD_URL"] }

    var databasePath: String { database ?? environment["SWITCHBOARD_DATABASE"] ?? "switchboard.db" }

    /// Where a running `serve` names its admin API for this database (see `Serve`).
    private var serverFilePath: String { databasePath + ".admin-url" }

    /// A client of the given server; else of the broker serving this database when it
    /// answers; else of http://127.0.0.1:8080.
    func client() async -> AdminClient {
        if let givenServer { return client(server: givenServer) }
        return client(server: await runningServer() ?? "http://127.0.0.1:8080")
    }

    /// Where the token commands go: the given server; else the broker serving this database
    /// when it answers and an admin token is at hand; nil otherwise (no broker runs, a killed
    /// one left the file, no token): then they open the store file itself.
    func tokenClient() async -> AdminClient? {
        if let givenServer { return client(server: givenServer) }
        guard adminToken != nil, let server = await runningServer() else { return nil }
        return client(server: server)
    }

    /// The admin address `serve` names in `<database>.admin-url` while it runs, when
    /// something answers there; nil without the file, or when a killed broker left it behind.
    private func runningServer() async -> String? {
        guard let text = try? String(contentsOfFile: serverFilePath, encoding: .utf8) else { return nil }
        let server = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let url = URL(string: server), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else { return nil }
        return await AdminClient(base: url, token: nil, json: json).answers() ? server : nil
    }

    /// `--token`, else `SWITCHBOARD_ADMIN_TOKEN`, else the token file beside the database.
    private var adminToken: String? {
        let token = token ?? environment["SWITCHBOARD_ADMIN_TOKEN"]
            ?? (try? String(contentsOfFile: databasePath + ".admin-token", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return token?.isEmpty == false ? token : nil
    }

    private func client(server: String) -> AdminClient {
        guard let token = adminToken else {
            Terminal.exit(
                withError: "no admin token: pass --token, set SWITCHBOARD_ADMIN_TOKEN, or run where "
                    + "\(databasePath).admin-token is readable", status: ExitStatus.noPermission)
        }
        return AdminClient.at(server, token: token, json: json)
    }
}

/// The exit statuses of the admin commands (`sysexits.h`), listed in `switchboard --help`.
enum ExitStatus {
    /// Bad arguments (also a request the server refused as malformed: 400).
    static let usage: Int32 = 64
    /// Not found (404), or a conflicting request (409).
    static let dataError: Int32 = 65
    /// The server cannot be reached.
    static let unavailable: Int32 = 69
    /// The server failed in an unexpected way.
    static let software: Int32 = 70
    /// The server is up but cannot do it now (503).
    static let tryAgain: Int32 = 75
    /// No token, or the token was refused (401, 403).
    static let noPermission: Int32 = 77

    static let help = """
        Exit status: 0 done; 64 bad arguments; 65 not found or conflict; 69 server unreachable; \
        70 unexpected server error; 75 server unavailable (try again); 77 missing or refused admin token.
        """
}

/// A request to the admin API; on any failure it prints one line and exits with its status.
struct AdminClient {
    let base: URL
    /// Nil for what needs none (`/readyz`).
    let token: String?
    let json: Bool

    /// A client of the broker at `server`; exits 64 unless it is an http(s) URL.
    static func at(_ server: String, token: String?, json: Bool) -> AdminClient {
        guard let url = URL(string: BrokerURL.converting(server, to: "http")), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil
        else {
            Terminal.exit(withError: "--server must be an http(s):// or ws(s):// URL, not \(server.debugDescription)", status: ExitStatus.usage)
        }
        return AdminClient(base: url, token: token, json: json)
    }

    /// The status and JSON object of the answer to `method path`, whatever the status.
    func fetch(_ method: String, _ path: String, body: [String: Any]? = nil) async -> (Int, [String: Any]?) {
        let (data, status) = await send(method, path, body: body)
        return (status, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any])
    }

    /// The answer's JSON (an object) to `method path` with an optional JSON body.
    func call(_ method: String, _ path: String, body: [String: Any]? = nil) async -> [String: Any] {
        let (status, object) = await fetch(method, path, body: body)
        guard (200..<300).contains(status) else {
            let error = object?["error"] as? [String: Any]
            let message = error?["message"] as? String ?? "HTTP \(status)"
            let exit: Int32 =
                switch status {
                case 400, 405, 413: ExitStatus.usage
                case 401, 403: ExitStatus.noPermission
                case 404, 409: ExitStatus.dataError
                case 503: ExitStatus.tryAgain
                default: ExitStatus.software
                }
            Terminal.exit(withError: "\(base.absoluteString): \(message)", status: exit)
        }
        guard let object else {
            Terminal.exit(withError: "\(base.absoluteString) answered something other than JSON", status: ExitStatus.software)
        }
        return object
    }

    /// Whether anything answers HTTP at `base` (`/healthz`) within 2 seconds.
    func answers() async -> Bool {
        guard let url = URL(string: "healthz", relativeTo: base) else { return false }
        return (try? await URLSession.shared.data(for: URLRequest(url: url, timeoutInterval: 2))) != nil
    }

    /// Prints the answer as it came when `--json` was given; returns whether it did.
    func printJSON(_ object: [String: Any]) -> Bool {
        guard json else { return false }
        Self.printJSON(object)
        return true
    }

    static func printJSON(_ object: [String: Any]) {
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]) {
            print(String(decoding: data, as: UTF8.self))
        }
    }

    private func send(_ method: String, _ path: String, body: [String: Any]?) async -> (Data, Int) {
        guard let url = URL(string: path, relativeTo: base) else {
            Terminal.exit(withError: "bad path \(path.debugDescription)", status: ExitStatus.usage)
        }
        var request = URLRequest(url: url, timeoutInterval: 15)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = try? JSONSerialization.data(withJSONObject: body)
        }
        do {
            let (data, response) = try await URLSession.shared.data(for: request)
            return (data, (response as? HTTPURLResponse)?.statusCode ?? 0)
        } catch {
            Terminal.exit(
                withError: "cannot reach the broker at \(base.absoluteString): \(error.localizedDescription) "
                    + "(is `switchboard serve` running? pass --server or set SWITCHBOARD_URL)",
                status: ExitStatus.unavailable)
        }
    }

    /// A path segment, percent-encoded.
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? text
    }
}

/// Columns of text, left-aligned, for the human output.
enum Table {
    /// `header` is left out when it is all empty.
    static func print(_ header: [String], _ rows: [[String]]) {
        let all = (header.allSatisfy(\.isEmpty) ? [] : [header]) + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        for row in all {
            let line = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
            Swift.print(line)
        }
    }

    /// A JSON number or string as text; "-" for null or absent.
    static func text(_ value: Any?) -> String {
        switch value {
        case let string as String: string
        case let number as NSNumber: number.stringValue
        case nil, is NSNull: "-"
        case let other?: "\(other)"
        }
    }
}
