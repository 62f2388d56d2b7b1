/// What takes a connection's messages and its close on the connection's event loop
/// (`WebSocket.setConsumer`): an object the connection's handler holds directly.
package protocol LoopConsumer: AnyObject {
    /// A message, in the order received.
    func received(_ message: WebSocketMessage)
    /// The close, once, after the last message.
    func closed(_ info: CloseInfo)
}
