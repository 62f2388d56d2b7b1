import AsyncTestSupport
import Foundation
import TestPeers
import WebSockets

@_spi(Fuzzing) @testable import Switchboard

/// One HTTP exchange with the broker's port over a raw TCP connection: the request as
/// written here, the response as the server sent it (it closes after each).
struct AdminResponse: CustomStringConvertible {
    var status: Int
    var head: String
    var body: String

    /// The body as a JSON object (an empty one when it is not one: the expectations on it fail).
    var json: JSON { (try? JSON(body)) ?? (try! JSON("{}")) }

    /// The `error.code` of an error body.
    var errorCode: String? {
        guard let object = try? JSON(body), let error = object.object["error"] as? [String: Any] else { return nil }
        return error["code"] as? String
    }

    func header(_ name: String) -> String? {
        for line in head.split(separator: "\r\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() {
                return parts[1].trimmingCharacters(in: .whitespaces)
            }
        }
        return nil
    }

    var description: String { "\(status) \(body)" }
}

extension TestBroker {
    /// A token with the admin right (and no topic access).
    func adminToken() throws -> String {
        try tokens.create(name: "admin-test", permissions: Permissions(admin: true)).token
    }

    /// Sends `method path` with `body` (and an admin bearer token when given).
    func http(_ method: String, _ path: String, token: String? = nil, body: String? = nil, headers: String = "")
        async throws -> AdminResponse
    {
        try await httpExchange(port: port, method, path, token: token, body: body, headers: headers)
    }
}

/// One request to 127.0.0.1:`port` and its whole response.
func httpExchange(
    port: Int, _ method: String, _ path: String, token: String? = nil, body: String? = nil, headers: String = ""
) async throws -> AdminResponse {
    let peer = try await RawPeer.connect(port: port, group: testGroup)
    defer { peer.close() }
    var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if let token { request += "Authorization: Bearer \(token)\r\n" }
    if let body { request += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
    request += headers + "\r\n" + (body ?? "")
    try await peer.send(string: request)
    let (status, head, text) = try await peer.readResponse()
    return AdminResponse(status: status, head: head, body: text)
}
