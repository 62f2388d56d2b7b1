// ws README, "Sending binary data":
//   const array = new Float32Array(5);
//   for (var i = 0; i < array.length; ++i) array[i] = i / 2;
//   ws.send(array);
import NIOCore
import WebSockets

enum SendingBinary {
    static func run() async throws {
        // The server reads the message back as five little-endian Float32s.
        let server = WebSocketServer { (ws: WebSocket) async throws in
            for try await message in ws.messages where message.kind == .binary {
                var data = message.data
                var floats: [Float] = []
                while let bits = data.readInteger(endianness: .little, as: UInt32.self) {
                    floats.append(Float(bitPattern: bits))
                }
                try await ws.send(text: "got \(message.data.readableBytes) bytes: \(floats)")
            }
        }
        try await withServer(server) { port in
            let ws = try await WebSocket.connect(to: "ws://127.0.0.1:\(port)/")
            var array = ByteBuffer()
            for i in 0..<5 { array.writeInteger((Float(i) / 2).bitPattern, endianness: .little) }
            try await ws.send(binary: array)
            for try await reply in ws.messages {
                print("server: \(reply.text)")
                break
            }
            try await ws.close()
        }
    }
}
