/// One element of a `Sec-WebSocket-Extensions` header: an extension name and its
/// parameters, in the order they were written (RFC 6455 §9.1). A parameter without a
/// value (`client_max_window_bits`) has `value == nil`; a quoted value is stored unquoted.
public struct ExtensionOffer: Hashable, Sendable {
    /// One parameter of an extension element.
    public struct Parameter: Hashable, Sendable {
        /// The parameter's name, e.g. `client_max_window_bits`.
        public var name: String
        /// Its value, unquoted; nil when it was written without one.
        public var value: String?

        /// A parameter `name`, with `value` when it has one.
        public init(_ name: String, _ value: String? = nil) {
            self.name = name
            self.value = value
        }
    }

    /// The extension's name, e.g. `permessage-deflate`.
    public var name: String
    /// Its parameters, in the order written.
    public var parameters: [Parameter]

    /// An element naming `name` with `parameters`.
    public init(name: String, parameters: [Parameter] = []) {
        self.name = name
        self.parameters = parameters
    }
}
