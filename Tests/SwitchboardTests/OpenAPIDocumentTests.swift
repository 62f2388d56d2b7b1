import AsyncTestSupport
import Foundation
import Testing

@_spi(Fuzzing) @testable import Switchboard

/// docs/openapi.yaml against the running API: every path and method it lists is served, and
/// every other method on those paths is 405, so the document cannot drift from the router.
@Suite struct OpenAPIDocumentTests {
    static let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("docs/openapi.yaml")

    /// The operations of the document's `paths:` block, by path (its two-space-indented keys)
    /// and method (their four-space-indented HTTP-method keys).
    static func operations() throws -> [String: Set<String>] {
        let text = try String(contentsOf: document, encoding: .utf8)
        let methods: Set<String> = ["get", "put", "post", "delete", "patch", "head", "options"]
        var operations: [String: Set<String>] = [:]
        var path: String?
        var inPaths = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if !line.hasPrefix(" ") { inPaths = line == "paths:" }
            guard inPaths else { continue }
            if line.hasPrefix("  /"), line.hasSuffix(":"), !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
                operations[path!] = []
            } else if let current = path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":"),
                case let key = String(line.dropFirst(4).dropLast()), methods.contains(key)
            {
                operations[current]?.insert(key.uppercased())
            }
        }
        return operations
    }

    @Test func everyDocumentedOperationIsServedAndNoOther() async throws {
        let operations = try Self.operations()
        #expect(operations.count >= 14, "\(operations.keys.sorted())")
        try await TestBroker.with { broker in
            let token = try broker.adminToken()
            for (path, documented) in operations.sorted(by: { $0.key < $1.key }) {
                #expect(!documented.isEmpty, "\(path) lists no operation")
                let concrete = path.replacingOccurrences(of: "{topic}", with: "doc.topic")
                    .replacingOccurrences(of: "{id}", with: "tok_unknown")
                for method in ["GET", "PUT", "POST", "DELETE"] {
                    // An empty JSON object: enough to get past routing to the handler's own checks.
                    let body = method == "GET" || method == "DELETE" ? nil : "{}"
                    let response = try await broker.http(method, concrete, token: token, body: body)
                    if documented.contains(method) {
                        #expect(response.status != 405, "\(method) \(path) is documented but refused: \(response)")
                        #expect(!response.body.contains("no such path"), "\(method) \(path) is documented but unrouted")
                    } else {
                        #expect(response.status == 405, "\(method) \(path) is served but not documented: \(response)")
                    }
                }
            }
        }
    }
}
