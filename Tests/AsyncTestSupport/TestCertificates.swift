import Foundation

/// Certificates made once per test run with the `openssl` CLI (EC P-256 keys, < 1 s) in a
/// temporary directory: two CAs and leaves for every TLS test.
///
/// | file | what |
/// | --- | --- |
/// | `ca` | the test CA |
/// | `otherca` | a CA nobody trusts (wrong-CA and reload tests) |
/// | `server` | localhost + 127.0.0.1, by `ca` |
/// | `server2` | localhost + 127.0.0.1, by `otherca` |
/// | `wronghost` | example.com only, by `ca` |
/// | `expired` | localhost + 127.0.0.1, by `ca`, expired yesterday (`-days -1`) |
/// | `client`, `otherclient` | client certificates by `ca` and by `otherca` |
public enum TestCertificates {
    public static let directory: URL = {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("switchboard-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
            ca() { key "$1.key"; openssl req -x509 -new -key "$1.key" -out "$1.pem" -subj "/CN=$2" -days 2 \\
              -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }
            leaf() {
              key "$1.key"; openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
              printf 'subjectAltName=%s\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth,clientAuth\\n' "$4" > "$1.ext"
              openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" -days "$3" \\
                -extfile "$1.ext" 2>/dev/null
            }
            ca ca "Switchboard Test CA"
            ca otherca "Other Test CA"
            leaf server ca 2 "DNS:localhost,IP:127.0.0.1"
            leaf server2 otherca 2 "DNS:localhost,IP:127.0.0.1"
            leaf wronghost ca 2 "DNS:example.com"
            leaf expired ca -1 "DNS:localhost,IP:127.0.0.1"
            leaf client ca 2 "DNS:client"
            leaf otherclient otherca 2 "DNS:client"
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = directory
        try! process.run()
        process.waitUntilExit()
        precondition(process.terminationStatus == 0, "openssl failed to make the test certificates")
        return directory
    }()

    public static func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    public static func pem(_ name: String) -> String { path("\(name).pem") }
    public static func key(_ name: String) -> String { path("\(name).key") }

    public static let available: Bool = FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")
}
