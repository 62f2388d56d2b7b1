/// An admin API request that cannot be carried out: its HTTP status, a stable code and a
/// one-line message, answered as `{"error":{"code":…,"message":…}}` (docs/admin-api.md).
struct AdminError: Error, Sendable {
    var status: Int
    var code: String
    var message: String
    /// Extra response headers (`Allow` for 405, `WWW-Authenticate` for 401).
    var headers: [(String, String)] = []

    static func badRequest(_ message: String) -> AdminError { AdminError(status: 400, code: "bad_request", message: message) }
    static func unauthorized(_ message: String) -> AdminError {
        AdminError(
            status: 401, code: "unauthorized", message: message,
            headers: [("WWW-Authenticate", "Bearer realm=\"switchboard-admin\"")])
    }
    static func forbidden(_ message: String) -> AdminError { AdminError(status: 403, code: "forbidden", message: message) }
    static func notFound(_ message: String) -> AdminError { AdminError(status: 404, code: "not_found", message: message) }
    static func methodNotAllowed(_ method: String, allowed: [String]) -> AdminError {
        AdminError(
            status: 405, code: "method_not_allowed", message: "\(method) is not allowed here (allowed: \(allowed.joined(separator: ", ")))",
            headers: [("Allow", allowed.joined(separator: ", "))])
    }
    static func conflict(_ message: String) -> AdminError { AdminError(status: 409, code: "conflict", message: message) }
    static func tooLarge(_ message: String) -> AdminError { AdminError(status: 413, code: "too_large", message: message) }
    static func unavailable(_ message: String) -> AdminError { AdminError(status: 503, code: "unavailable", message: message) }
}
