import ArgumentParser
import Foundation
import Switchboard

/// `switchboard backup FILE`: a consistent copy of the live store, taken while the broker runs.
struct BackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Copy the live store to FILE (safe while the broker runs).",
        discussion: """
            The copy holds everything committed when it starts: every token, topic seq and \
            retained message acked before then. It is a whole database (no -wal file); restore it \
            by stopping the broker and putting it in place of the store (docs/operations.md). \
            With replay_database set, back that file up too.

            Examples:
              switchboard backup /backups/switchboard-$(date +%F).db
              switchboard backup --database /var/lib/switchboard/switchboard.db /backups/sb.db

            Exit status: 0 done; 64 bad arguments; 66 the store cannot be read; 73 FILE exists or cannot be written.
            """)
    @Option(help: "The store (default ./switchboard.db, or $SWITCHBOARD_DATABASE).") var database: String?
    @Argument(help: "The copy to write; must not exist.") var file: String

    func run() {
        let source = database ?? ProcessInfo.processInfo.environment["SWITCHBOARD_DATABASE"] ?? "switchboard.db"
        guard FileManager.default.fileExists(atPath: source) else {
            Terminal.exit(withError: "no store at \(source) (pass --database)", status: 66)
        }
        guard !FileManager.default.fileExists(atPath: file) else {
            Terminal.exit(withError: "\(file) exists; give a new file name", status: 73)
        }
        do {
            try Backup.copy(source, to: file)
        } catch {
            Terminal.exit(withError: "cannot back up \(source) to \(file): \(error.message)", status: 73)
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? NSNumber)?.intValue ?? 0
        print("backed up \(source) to \(file) (\(size) bytes)")
    }
}
