import NIOCore

/// A message as the publish script sends it on a topic's channel:
/// `SEQ TIME EPOCH FORMAT\n` then the payload bytes (FORMAT is `j` for JSON, `b` binary).
struct ClusterMessage: Sendable, Equatable {
    var sequence: UInt64
    var time: Int64
    var epoch: String
    var format: PayloadFormat
    var payload: ByteBuffer

    /// The one-letter form the script and the stream store.
    static func code(_ format: PayloadFormat) -> String {
        switch format {
        case .json: "j"
        case .binary: "b"
        }
    }

    static func format(code: String) -> PayloadFormat? {
        switch code {
        case "j": .json
        case "b": .binary
        default: nil
        }
    }

    /// Parses a channel message; nil when it is not one the script wrote.
    init?(channelPayload: ByteBuffer) {
        var bytes = channelPayload
        guard let newline = bytes.readableBytesView.firstIndex(of: UInt8(ascii: "\n")),
            let header = bytes.readString(length: newline - bytes.readerIndex)
        else { return nil }
        bytes.moveReaderIndex(forwardBy: 1)
        let fields = header.split(separator: " ")
        guard fields.count == 4, let sequence = UInt64(fields[0]), let time = Int64(fields[1]),
            let format = Self.format(code: String(fields[3]))
        else { return nil }
        self.init(sequence: sequence, time: time, epoch: String(fields[2]), format: format, payload: bytes)
    }

    init(sequence: UInt64, time: Int64, epoch: String, format: PayloadFormat, payload: ByteBuffer) {
        self.sequence = sequence
        self.time = time
        self.epoch = epoch
        self.format = format
        self.payload = payload
    }
}
