import AsyncTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import TestPeers
import Testing
import WebSocketCore
import WebSockets

@testable import Switchboard

/// permessage-deflate on the broker: one compressed frame per message, shared by every
/// subscriber that agreed to deflate; the threshold; peers that cannot take the shared frame;
/// real clients (ours, Python `websockets`, Node `ws`) inflating what the broker sends.
@Suite("Broker permessage-deflate", .serialized)
struct BrokerDeflateTests {
    static func deflateOn(_ configuration: inout BrokerConfiguration) {
        configuration.deflate.enabled = true
        configuration.deflate.threshold = 256
    }

    /// A publish whose `data` is a JSON string of `count` letters (compressible).
    static func publish(_ topic: String, _ count: Int, mark: String) -> String {
        "{\"op\":\"pub\",\"topic\":\"\(topic)\",\"data\":\"\(mark)\(String(repeating: "abcdefgh", count: count / 8))\"}"
    }

    /// A raw subscriber that offers `extensions` and subscribed to `topic`; returns it and
    /// the response's extension header.
    static func rawSubscriber(_ broker: TestBroker, _ topic: String, extensions: String) async throws -> (RawPeer, String) {
        let peer = try await RawPeer.connect(port: broker.port, group: testGroup)
        try await peer.send(string: RawPeer.upgradeRequest(
            extraHeaders: "Authorization: Bearer \(try broker.token().token)\r\nSec-WebSocket-Extensions: \(extensions)\r\n"))
        let head = try await peer.readHead()
        #expect(head.hasPrefix("HTTP/1.1 101"))
        let agreed = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("sec-websocket-extensions:") }
            .map { String($0.dropFirst("sec-websocket-extensions:".count)).trimmingCharacters(in: .whitespaces) } ?? ""
        try await peer.send(text: "{\"op\":\"sub\",\"topic\":\"\(topic)\"}")
        let subscribed = try await peer.readFrame()
        #expect(subscribed.text.contains("\"subscribed\""))
        return (peer, agreed)
    }

    /// Inflates one message compressed without context takeover, as a client does.
    static func inflate(_ payload: [UInt8]) throws -> String {
        let engine = PerMessageDeflate(role: .client, parameters: PerMessageDeflateParameters(serverNoContextTakeover: true))
        var output = ByteBuffer()
        try engine.decompress(ByteBuffer(bytes: payload), isFinal: true, into: &output, limit: 1 << 20)
        return String(buffer: output)
    }

    @Test("a message over the threshold reaches every deflate subscriber as the same compressed frame; a small one goes uncompressed")
    func sharedFrameAndThreshold() async throws {
        try await TestBroker.with(Self.deflateOn) { broker in
            let (first, agreed) = try await Self.rawSubscriber(broker, "news", extensions: "permessage-deflate; client_max_window_bits")
            let (second, _) = try await Self.rawSubscriber(broker, "news", extensions: "permessage-deflate")
            #expect(agreed == "permessage-deflate; server_no_context_takeover")
            let publisher = try await broker.client()
            try await publisher.send(Self.publish("news", 2000, mark: "big"))
            try await publisher.send(Self.publish("news", 16, mark: "small"))

            var compressedPayloads: [[UInt8]] = []
            for peer in [first, second] {
                let big = try await peer.readFrame()
                #expect(big.rsv == 4 && big.opcode == 1, "compressed text frame: \(big)")
                #expect(big.payload.count < 500, "2000 repeated letters compress well: \(big.payload.count) bytes")
                let text = try Self.inflate(big.payload)
                #expect(text.hasPrefix("{\"op\":\"msg\",\"topic\":\"news\",\"seq\":1,"))
                #expect(text.contains("\"data\":\"big\(String(repeating: "abcdefgh", count: 250))\""))
                compressedPayloads.append(big.payload)

                let small = try await peer.readFrame()
                #expect(small.rsv == 0, "under the threshold: uncompressed")
                #expect(small.text.contains("\"seq\":2,") && small.text.contains("small"))
            }
            #expect(compressedPayloads[0] == compressedPayloads[1], "one compressed frame for both")
            first.close()
            second.close()
        }
    }

    @Test("a client that limits the server's window below the broker's gets uncompressed frames; one without deflate too")
    func peersThatCannotTakeTheSharedFrame() async throws {
        try await TestBroker.with(Self.deflateOn) { broker in
            let (narrow, agreed) = try await Self.rawSubscriber(
                broker, "news", extensions: "permessage-deflate; server_max_window_bits=10")
            #expect(agreed.contains("server_max_window_bits=10"))
            let (plain, plainAgreed) = try await Self.rawSubscriber(broker, "news", extensions: "x-unknown")
            #expect(plainAgreed.isEmpty)
            let (wide, _) = try await Self.rawSubscriber(broker, "news", extensions: "permessage-deflate")
            let publisher = try await broker.client()
            try await publisher.send(Self.publish("news", 4000, mark: "big"))
            for peer in [narrow, plain] {
                let frame = try await peer.readFrame()
                #expect(frame.rsv == 0, "uncompressed: \(frame)")
                #expect(frame.text.contains("\"data\":\"big\(String(repeating: "abcdefgh", count: 500))\""))
                peer.close()
            }
            let compressed = try await wide.readFrame()
            #expect(compressed.rsv == 4, "RSV1 (bits as RawFrame numbers them)")
            #expect(try Self.inflate(compressed.payload).contains("big\(String(repeating: "abcdefgh", count: 500))"))
            wide.close()
        }
    }

    @Test("a catch-up (last) replays messages over the threshold compressed, the others as they are")
    func replayedPagesAreCompressed() async throws {
        try await TestBroker.with({ configuration in
            Self.deflateOn(&configuration)
            configuration.replay.rules = [try! ReplayRule.parse("news count=100").get()]
        }) { broker in
            let publisher = try await broker.client()
            try await publisher.send(Self.publish("news", 3000, mark: "big"))
            try await publisher.send(Self.publish("news", 16, mark: "small"))
            #expect(try await publisher.request(#"{"op":"pub","topic":"news","id":"3","data":"sync"}"#)["op"] == "ack")

            let peer = try await RawPeer.connect(port: broker.port, group: testGroup)
            try await peer.send(string: RawPeer.upgradeRequest(
                extraHeaders: "Authorization: Bearer \(try broker.token().token)\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"))
            #expect(try await peer.readHead().hasPrefix("HTTP/1.1 101"))
            try await peer.send(text: #"{"op":"sub","topic":"news","last":3}"#)
            #expect(try await peer.readFrame().text.contains("subscribed"))
            let big = try await peer.readFrame()
            #expect(big.rsv == 4, "compressed: \(big)")
            #expect(try Self.inflate(big.payload).contains("\"seq\":1,") == true)
            #expect(try Self.inflate(big.payload).contains("big\(String(repeating: "abcdefgh", count: 375))"))
            let small = try await peer.readFrame()
            #expect(small.rsv == 0 && small.text.contains("\"seq\":2,"))
            peer.close()
        }
    }

    @Test("our WebSocket client, offering deflate as it does by default, gets every message whole")
    func ourClient() async throws {
        try await TestBroker.with(Self.deflateOn) { broker in
            var options = ClientOptions()
            options.protocols = ["switchboard.v1"]
            options.headers.add(name: "Authorization", value: "Bearer \(try broker.token().token)")
            let ws = try await WebSocket.connect(to: broker.url, options: options, group: testGroup)
            #expect(ws.handshake.extensions.first?.name == "permessage-deflate")
            let inbox = Inbox<WebSocketMessage>()
            ws.onMessage { inbox.put($0) }
            try await ws.send(text: "{\"op\":\"sub\",\"topic\":\"news\"}")
            #expect(try await inbox.next().text.contains("subscribed"))
            let publisher = try await broker.client()
            for (index, size) in [100, 3000, 50_000].enumerated() {
                try await publisher.send(Self.publish("news", size, mark: "m\(index)"))
                let message = try await inbox.next().text
                #expect(message.contains("\"seq\":\(index + 1),"))
                #expect(message.contains("\"data\":\"m\(index)\(String(repeating: "abcdefgh", count: size / 8))\""))
            }
            try await ws.close()
        }
    }

    @Test("Python websockets and Node ws, offering permessage-deflate, subscribe and get the payloads whole", arguments: ["python", "node"])
    func realPeers(_ peer: String) async throws {
        let script: [String]
        switch peer {
        case "python":
            script = ["python3", "-c", """
                import asyncio, json, sys, websockets
                async def main():
                    async with websockets.connect(sys.argv[1], subprotocols=["switchboard.v1"]) as ws:
                        print("ext", ws.response.headers.get("Sec-WebSocket-Extensions"), flush=True)
                        await ws.send(json.dumps({"op": "sub", "topic": "news"}))
                        await ws.recv()
                        print("ready", flush=True)
                        for _ in range(3):
                            m = json.loads(await ws.recv())
                            print("msg", m["seq"], len(m["data"]), m["data"][:2], flush=True)
                asyncio.run(main())
                """]
        default:
            script = ["node", "-e", """
                const WebSocket = require('ws');
                const ws = new WebSocket(process.argv[1], ['switchboard.v1'], { perMessageDeflate: true });
                let n = 0;
                ws.on('upgrade', (res) => console.log('ext', res.headers['sec-websocket-extensions']));
                ws.on('open', () => ws.send(JSON.stringify({ op: 'sub', topic: 'news' })));
                ws.on('message', (data) => {
                    const m = JSON.parse(data.toString());
                    if (m.op === 'subscribed') { console.log('ready'); return; }
                    console.log('msg', m.seq, m.data.length, m.data.slice(0, 2));
                    if (++n === 3) ws.close();
                });
                """]
        }
        try await TestBroker.with({ Self.deflateOn(&$0); $0.anonymous = .init(subscribe: [">"]) }) { broker in
            let child = try PeerChild(script + [broker.url])
            defer { child.stop() }
            #expect(try await child.line(prefix: "ext").contains("server_no_context_takeover"))
            _ = try await child.line(prefix: "ready")
            let publisher = try await broker.client()
            for (index, size) in [64, 4096, 100_000].enumerated() {
                try await publisher.send(Self.publish("news", size, mark: "m\(index)"))
                let expected = 2 + size / 8 * 8
                #expect(try await child.line(prefix: "msg") == "msg \(index + 1) \(expected) m\(index)")
            }
        }
    }
}

/// A peer script run as a child process; its output read line by line, every wait bounded.
final class PeerChild: Sendable {
    private let process: Process
    private let lines = Inbox<String>()

    init(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NODE_PATH"] = (environment["NODE_PATH"].map { $0 + ":" } ?? "") + "/usr/share/nodejs"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let lines = lines
        let pending = LineBuffer()
        try process.run()
        readUntilEnd(of: output) { data in
            for line in pending.append(String(decoding: data, as: UTF8.self)) { lines.put(line) }
        }
        self.process = process
    }

    /// The next output line that starts with `prefix` (other lines are skipped).
    func line(prefix: String) async throws -> String {
        while true {
            let line = try await lines.next()
            if line.hasPrefix(prefix) { return line }
        }
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }
}

/// Text received in pieces, handed out as whole lines.
private final class LineBuffer: Sendable {
    private let buffer = NIOLockedValueBox("")

    func append(_ text: String) -> [String] {
        buffer.withLockedValue { buffer in
            buffer += text
            var lines = buffer.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            buffer = lines.removeLast()
            return lines
        }
    }
}
