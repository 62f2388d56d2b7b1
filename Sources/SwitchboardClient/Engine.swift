import Logging
import NIOCore
import WebSocketCore
import WebSockets

/// Owns the client's `Core` on its event loop and runs the connection loop: connect (asking
/// the token provider each time), hand the connection to the core, wait for its end, decide
/// whether and when to try again.
final class Engine: Sendable {
    let loop: any EventLoop
    let url: WebSocketURL
    let token: Token
    let options: SwitchboardClient.Options
    /// Set on the loop by `init`, before anything else runs there (the loop runs tasks in order).
    private let box: NIOLoopBoundBox<Core?>

    init(url: WebSocketURL, token: Token, options: SwitchboardClient.Options, loop: any EventLoop) {
        self.url = url
        self.token = token
        self.options = options
        self.loop = loop
        // The core calls back through this engine, so it is made once the engine exists.
        box = .makeEmptyBox(valueType: Core.self, eventLoop: loop)
        let box = box
        let options = options
        let make: @Sendable (Engine) -> Void = { engine in box.value = Core(engine: engine, loop: loop, options: options) }
        if loop.inEventLoop { make(self) } else { loop.execute { [self] in make(self) } }
    }

    /// Runs `body` with the core on the loop: at once when already there.
    func onLoop(_ body: @escaping @Sendable (Core) -> Void) {
        if loop.inEventLoop {
            body(box.value!)
        } else {
            loop.execute { [box] in body(box.value!) }
        }
    }

    /// Runs `body` with the core on the loop and returns its result.
    func withCore<T: Sendable>(_ body: @escaping @Sendable (Core) -> T) async -> T {
        // The loop outlives every client, so this never fails.
        try! await loop.submit { [box] in body(box.value!) }.get()
    }
}
