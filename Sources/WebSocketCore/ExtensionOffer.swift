/// One element of a `Sec-WebSocket-Extensions` header: an extension name and its
/// parameters, in the order they were written (RFC 6455 §9.1). A parameter without a
/// value (`client_max_window_bits`) has `value == nil`; a quoted value is stored unquoted.
public struct ExtensionOffer: Hashable, Sendable {
    public struct Parameter: Hashable, Sendable {
        public var name: String
        public var value: String?

        public init(_ name: String, _ value: String? = nil) {
            self.name = name
            self.value = value
        }
    }

    public var name: String
    public var parameters: [Parameter]

    public init(name: String, parameters: [Parameter] = []) {
        self.name = name
        self.parameters = parameters
    }
}
