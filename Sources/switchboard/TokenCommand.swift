import ArgumentParser
import Foundation
import Switchboard

/// `switchboard token …`: manages opaque tokens directly in the store. A running broker
/// picks up revocations within a second.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list and revoke client tokens.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct StoreOptions: ParsableArguments {
        @Option(help: "SQLite store (default ./switchboard.db, or SWITCHBOARD_DATABASE).") var database: String?

        func open() -> TokenStore {
            let path = database ?? ProcessInfo.processInfo.environment["SWITCHBOARD_DATABASE"] ?? "switchboard.db"
            do {
                return try TokenStore(store: Store(path: path))
            } catch {
                Terminal.exit(withError: "cannot open the store \(path): \(error.message)", status: 69)
            }
        }
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a token and print it (shown once).")
        @OptionGroup var store: StoreOptions
        @Option(help: "A name for the token (shown in lists and logs).") var name: String
        @Option(help: "Patterns it may subscribe to, comma-separated.") var subscribe: String = ""
        @Option(help: "Patterns it may publish to, comma-separated.") var publish: String = ""
        @Flag(help: "Grant the admin right.") var admin = false
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

        func run() throws {
            let tokens = store.open()
            let permissions = Permissions(
                subscribe: Self.split(subscribe).compactMap { try? TopicPattern($0) },
                publish: Self.split(publish).compactMap { try? TopicPattern($0) },
                admin: admin,
                expiresAt: expiresIn.map { Date().addingTimeInterval(TimeInterval($0)) })
            do {
                let (token, record) = try tokens.create(name: name, permissions: permissions)
                FileHandle.standardError.write(Data("switchboard: created token \(record.id) (\(name))\n".utf8))
                print(token)
            } catch {
                Terminal.exit(withError: "cannot create the token: \(error)", status: 73)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (never their secrets).")
        @OptionGroup var store: StoreOptions

        func run() {
            for record in store.open().list() {
                let state = record.isRevoked ? "revoked" : (record.permissions.isExpired(at: Date()) ? "expired" : "active")
                let subscribe = record.permissions.subscribe.map(\.name).joined(separator: ",")
                let publish = record.permissions.publish.map(\.name).joined(separator: ",")
                print("\(record.id)\t\(record.name)\t\(state)\tsub=\(subscribe)\tpub=\(publish)\(record.permissions.admin ? "\tadmin" : "")")
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a token by id; its connections close with 4001.")
        @OptionGroup var store: StoreOptions
        @Argument(help: "The token id (tok_…).") var id: String

        func run() {
            do {
                guard try store.open().revoke(id: id) != nil else { Terminal.exit(withError: "no token with id \(id)", status: 65) }
                print("revoked \(id)")
            } catch {
                Terminal.exit(withError: "cannot revoke \(id): \(error)", status: 73)
            }
        }
    }
}
