import WebSockets

/// `/admin/v1/connections…`: who is connected, and closing one.
extension AdminAPI {
    /// Connections per page at most, and by default.
    static let maxConnectionsListed = 1000
    static let defaultConnectionsListed = 100

    /// `GET /admin/v1/connections?after=ID&limit=N`: open connections by id; `next` is the
    /// `after` of the next page (absent on the last).
    func connections(_ request: PlainHTTPRequest) async throws(AdminError) -> PlainHTTPResponse {
        let query = request.query
        let after = try AdminJSON.query(query, "after", maximum: .max) ?? 0
        let limit = Int(
            try AdminJSON.query(query, "limit", maximum: UInt64(Self.maxConnectionsListed))
                ?? UInt64(Self.defaultConnectionsListed))
        let page = await broker.connections(after: after, limit: max(limit, 1))
        let now = broker.clock()
        var body: [String: Any] = [
            "connections": page.map { connection in
                [
                    "id": String(connection.id), "peer": connection.peer, "principal": connection.principal,
                    "subscriptions": connection.subscriptions, "queued_bytes": connection.queuedBytes,
                    "connected_at": connection.openedAt,
                    "age_seconds": Double(max(0, now - connection.openedAt)) / 1000,
                ] as [String: Any]
            }
        ]
        if page.count == max(limit, 1), let last = page.last { body["next"] = String(last.id) }
        return AdminJSON.response(200, body)
    }

    /// `POST /admin/v1/connections/{id}/close`: closes it with 4003.
    func closeConnection(_ text: String) async throws(AdminError) -> PlainHTTPResponse {
        guard let id = UInt64(text) else { throw .badRequest("a connection id is a number, not \(text.debugDescription)") }
        guard await broker.closeConnection(id: id) else { throw .notFound("no open connection with id \(id)") }
        return AdminJSON.response(200, ["id": text, "closed": true, "code": Int(Broker.CloseCodes.closedByAdmin.rawValue)])
    }
}
