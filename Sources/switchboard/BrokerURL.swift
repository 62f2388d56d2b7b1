import Foundation

/// One `SWITCHBOARD_URL` names the broker for every command: `sub` and `pub` speak WebSocket
/// to it, the admin commands HTTP on the same port, and each takes the URL in either form.
enum BrokerURL {
    /// `text` with a `ws`, `wss`, `http` or `https` scheme moved to `family` (`"ws"` or
    /// `"http"`), keeping whether it is secure; any other text unchanged, for the caller to refuse.
    static func converting(_ text: String, to family: String) -> String {
        guard var components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
            ["ws", "wss", "http", "https"].contains(scheme)
        else { return text }
        components.scheme = family + (scheme == "wss" || scheme == "https" ? "s" : "")
        return components.string ?? text
    }
}
