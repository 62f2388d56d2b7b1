import Foundation

/// A key a person presses, sent to the page as the browser's own key events
/// (`Input.dispatchKeyEvent`): focus moves, forms submit and buttons activate by the
/// browser's default actions, as with a real keyboard.
public enum Key: Sendable {
    case tab, enter, space
    case character(Character)

    fileprivate var event: (key: String, code: String, keyCode: Int, text: String?) {
        switch self {
        case .tab: return ("Tab", "Tab", 9, nil)
        case .enter: return ("Enter", "Enter", 13, "\r")
        case .space: return (" ", "Space", 32, " ")
        case .character(let character):
            let text = String(character)
            // Windows virtual key codes: a letter or digit is its upper-case ASCII code; typing needs no other.
            let scalar = text.uppercased().unicodeScalars.first!
            let letterOrDigit = ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
            return (text, "", letterOrDigit ? Int(scalar.value) : 0, text)
        }
    }
}

extension BrowserPage {
    /// Presses and releases `key`, with Shift held when `shift`.
    public func press(_ key: Key, shift: Bool = false) async throws {
        let event = key.event
        var down: [String: any Sendable] = [
            "type": event.text == nil ? "rawKeyDown" : "keyDown", "key": event.key, "code": event.code,
            "windowsVirtualKeyCode": event.keyCode, "modifiers": shift ? 8 : 0,
        ]
        if let text = event.text { down["text"] = text }
        _ = try await send("Input.dispatchKeyEvent", down)
        _ = try await send(
            "Input.dispatchKeyEvent",
            ["type": "keyUp", "key": event.key, "code": event.code, "windowsVirtualKeyCode": event.keyCode, "modifiers": shift ? 8 : 0])
    }

    /// Types `text` one key at a time into whatever has the focus.
    public func type(_ text: String) async throws {
        for character in text { try await press(.character(character)) }
    }
}
