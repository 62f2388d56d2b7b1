import ArgumentParser
import Foundation
import Switchboard

/// `switchboard token …`: opaque client tokens, through a running broker's admin API, else
/// (no broker runs) directly in the store file.
struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list, show and revoke client tokens.",
        discussion: """
            With --server (or SWITCHBOARD_URL) the commands go through that broker's admin API. \
            Without, they go through the API of the broker serving the store (--database), which \
            names its address in <database>.admin-url while it runs; when that file is absent, \
            nothing answers there (no broker runs) or no admin token is at hand, they open the \
            store file itself.

            \(ExitStatus.help)
            """,
        subcommands: [Create.self, List.self, Show.self, Revoke.self])

    static func openStore(_ admin: AdminOptions) -> TokenStore {
        let path = admin.databasePath
        do {
            return try TokenStore(store: Store(path: path))
        } catch {
            Terminal.exit(withError: "cannot open the store \(path): \(error.message)", status: ExitStatus.unavailable)
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print it (shown once).",
            discussion: """
                Examples:
                  switchboard token create --name dashboard --subscribe 'metrics.>' --publish 'metrics.in.*'
                  switchboard token create --name ops --admin --expires-in 86400 --server http://broker:8080
                """)
        @OptionGroup var admin: AdminOptions
        @Option(help: "A name for the token (shown in lists and logs).") var name: String
        @Option(help: "Patterns it may subscribe to, comma-separated.") var subscribe: String = ""
        @Option(help: "Patterns it may publish to, comma-separated.") var publish: String = ""
        @Flag(name: .customLong("admin"), help: "Grant the admin right.") var grantAdmin = false
        @Option(help: "Lifetime in seconds (default: no expiry).") var expiresIn: Int?

        func validate() throws {
            for (flag, list) in [("--subscribe", subscribe), ("--publish", publish)] {
                for name in Self.split(list) {
                    do { _ = try TopicPattern(name) } catch {
                        throw ValidationError("\(flag): \(name): \(error.message)")
                    }
                }
            }
            if let expiresIn, !(1...Self.maxLifetime).contains(expiresIn) {
                throw ValidationError("--expires-in must be 1 to \(Self.maxLifetime) seconds (100 years), not \(expiresIn)")
            }
        }

        /// The longest `--expires-in`: 100 years, in seconds.
        static let maxLifetime = 3_153_600_000

        static func split(_ list: String) -> [String] {
            list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }

        func run() async {
            if let client = await admin.tokenClient() {
                var body: [String: Any] = [
                    "name": name, "subscribe": Self.split(subscribe), "publish": Self.split(publish), "admin": grantAdmin,
                ]
                if let expiresIn { body["ttl_seconds"] = expiresIn }
                let answer = await client.call("POST", "admin/v1/tokens", body: body)
                guard !client.printJSON(answer) else { return }
                FileHandle.standardError.write(Data("switchboard: created token \(Table.text(answer["id"])) (\(name))\n".utf8))
                print(Table.text(answer["token"]))
                return
            }
            let tokens = TokenCommand.openStore(admin)
            let permissions = Permissions(
                subscribe: Self.split(subscribe).compactMap { try? TopicPattern($0) },
                publish: Self.split(publish).compactMap { try? TopicPattern($0) },
                admin: grantAdmin,
                expiresAt: expiresIn.map { Date().addingTimeInterval(TimeInterval($0)) })
            do {
                let (token, record) = try tokens.create(name: name, permissions: permissions)
                if admin.json {
                    AdminClient.printJSON(record.adminDescription.merging(["token": token]) { $1 })
                    return
                }
                FileHandle.standardError.write(Data("switchboard: created token \(record.id) (\(name))\n".utf8))
                print(token)
            } catch {
                Terminal.exit(withError: "cannot create the token: \(error)", status: 73)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tokens (never their secrets).",
            discussion: """
                Examples:
                  switchboard token list
                  switchboard token list --server http://broker:8080 --json
                """)
        @OptionGroup var admin: AdminOptions

        func run() async {
            let tokens: [[String: Any]]
            if let client = await admin.tokenClient() {
                let answer = await client.call("GET", "admin/v1/tokens")
                guard !client.printJSON(answer) else { return }
                tokens = answer["tokens"] as? [[String: Any]] ?? []
            } else {
                tokens = TokenCommand.openStore(admin).list().map(\.adminDescription)
                if admin.json { return AdminClient.printJSON(["tokens": tokens]) }
            }
            Table.print(["ID", "NAME", "STATE", "SUBSCRIBE", "PUBLISH", "ADMIN"], tokens.map(TokenCommand.row))
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one token (never its secret).",
            discussion: """
                Examples:
                  switchboard token show tok_3kTz9aQ1bC2d
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The token id (tok_…).") var id: String

        func run() async {
            let token: [String: Any]
            if let client = await admin.tokenClient() {
                token = await client.call("GET", "admin/v1/tokens/\(AdminClient.segment(id))")
                guard !client.printJSON(token) else { return }
            } else {
                guard let record = TokenCommand.openStore(admin).record(id: id) else {
                    Terminal.exit(withError: "no token with id \(id)", status: ExitStatus.dataError)
                }
                token = record.adminDescription
                if admin.json { return AdminClient.printJSON(token) }
            }
            Table.print(["ID", "NAME", "STATE", "SUBSCRIBE", "PUBLISH", "ADMIN"], [TokenCommand.row(token)])
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a token by id; its connections close with 4001.",
            discussion: """
                Examples:
                  switchboard token revoke tok_3kTz9aQ1bC2d
                  SWITCHBOARD_URL=http://broker:8080 switchboard token revoke tok_3kTz9aQ1bC2d
                """)
        @OptionGroup var admin: AdminOptions
        @Argument(help: "The token id (tok_…).") var id: String

        func run() async {
            if let client = await admin.tokenClient() {
                let answer = await client.call("DELETE", "admin/v1/tokens/\(AdminClient.segment(id))")
                if !client.printJSON(answer) { print("revoked \(id)") }
                return
            }
            do {
                guard let record = try TokenCommand.openStore(admin).revoke(id: id) else {
                    Terminal.exit(withError: "no token with id \(id)", status: ExitStatus.dataError)
                }
                if admin.json { return AdminClient.printJSON(record.adminDescription) }
                print("revoked \(id)")
            } catch {
                Terminal.exit(withError: "cannot revoke \(id): \(error)", status: 73)
            }
        }
    }

    static func row(_ token: [String: Any]) -> [String] {
        [
            Table.text(token["id"]), Table.text(token["name"]), Table.text(token["state"]),
            ((token["subscribe"] as? [String]) ?? []).joined(separator: ","),
            ((token["publish"] as? [String]) ?? []).joined(separator: ","),
            (token["admin"] as? Bool) == true ? "yes" : "no",
        ]
    }
}
