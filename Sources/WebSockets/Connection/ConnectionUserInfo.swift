/// A key for a value that `verifyClient` attaches to a connection, naming the value's type:
///
///     enum PrincipalKey: ConnectionUserInfoKey { typealias Value = Principal }
///     // in verifyClient:  return .accept(userInfo: ConnectionUserInfo(PrincipalKey.self, principal))
///     // on the connection: let principal = ws.userInfo[PrincipalKey.self]
public protocol ConnectionUserInfoKey {
    /// The type of the value stored under this key.
    associatedtype Value: Sendable
}

/// What `verifyClient` learned about a connection (the authenticated principal, a tenant…),
/// kept as `WebSocket.userInfo` and read back by key with its type.
public struct ConnectionUserInfo: Sendable {
    // Typed keys, in the manner of swift-service-context's `ServiceContextKey`: the read site
    // gets the type the key names without a generic server or connection type (which would
    // spread a type parameter through every API and the attached-mode routes) and without a
    // cast at every use; the one cast is here, guarded by the key's type. One value, the usual
    // case, is stored inline, so an authenticated connection costs no dictionary.
    private enum Storage: Sendable {
        case empty
        case one(ObjectIdentifier, any Sendable)
        case many([ObjectIdentifier: any Sendable])
    }

    private var storage = Storage.empty

    /// Holding nothing.
    public init() {}

    /// Holding `value` under `key`.
    public init<Key: ConnectionUserInfoKey>(_ key: Key.Type, _ value: Key.Value) {
        self[key] = value
    }

    /// The value stored under `key`, nil when there is none.
    public subscript<Key: ConnectionUserInfoKey>(key: Key.Type) -> Key.Value? {
        get {
            let id = ObjectIdentifier(key)
            switch storage {
            case .empty: return nil
            case .one(let stored, let value): return stored == id ? value as? Key.Value : nil
            case .many(let values): return values[id] as? Key.Value
            }
        }
        set {
            let id = ObjectIdentifier(key)
            var values: [ObjectIdentifier: any Sendable]
            switch storage {
            case .empty: values = [:]
            case .one(let stored, let value): values = [stored: value]
            case .many(let existing): values = existing
            }
            storage = .empty
            values[id] = newValue
            if values.count > 1 {
                storage = .many(values)
            } else if let only = values.first {
                storage = .one(only.key, only.value)
            }
        }
    }
}
