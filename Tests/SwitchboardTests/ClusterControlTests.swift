import AsyncTestSupport
import BrokerProcess
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import Switchboard

/// The cluster's control channel between real `switchboard serve --cluster` processes and a
/// real `redis-server`: revocations, retention rules, heartbeats; and admin publishes.
@Suite(.serialized) struct ClusterControlTests {
    /// Tokens made in one store by the CLI before any node starts; each node gets a copy of
    /// the store, so every node knows them, each in its own database.
    struct Seed: Sendable {
        var directory: URL
        var admin: String
        var client: String
        var clientID: String

        static func make() async throws -> Seed {
            let directory = try makeTemporaryDirectory()
            func create(_ arguments: [String]) async throws -> JSON {
                let process = try SwitchboardProcess.start(
                    ["token", "create", "--database", "switchboard.db", "--json"] + arguments, in: directory)
                let status = try await process.exitStatus()
                guard status == 0 else { throw TestFailure("token create exited \(status): \(process.stderr.text)") }
                return try JSON(process.stdout.text)
            }
            let admin = try await create(["--name", "admin", "--admin"])
            let client = try await create(["--name", "client", "--subscribe", "c.>", "--publish", "c.>"])
            guard let adminToken = admin["token"], let clientToken = client["token"], let id = client["id"] else {
                throw TestFailure("token create printed \(admin) and \(client)")
            }
            return Seed(directory: directory, admin: adminToken, client: clientToken, clientID: id)
        }

        /// A node on a copy of the seeded store.
        func node(_ redis: RedisServerProcess, environment: [String: String] = [:]) async throws -> Node {
            let directory = try makeTemporaryDirectory()
            for suffix in ["", "-wal"] {
                let file = self.directory.appendingPathComponent("switchboard.db" + suffix)
                if FileManager.default.fileExists(atPath: file.path) {
                    try FileManager.default.copyItem(at: file, to: directory.appendingPathComponent("switchboard.db" + suffix))
                }
            }
            let process = try SwitchboardProcess.start(
                [
                    "serve", "--port", "0", "--host", "127.0.0.1", "--database", "switchboard.db",
                    "--anonymous-subscribe", "c.>", "--anonymous-publish", "c.>", "--cluster", redis.url,
                ],
                in: directory, environment: environment)
            return Node(process: process, port: try await process.listeningPort())
        }
    }

    struct Node: Sendable {
        var process: SwitchboardProcess
        var port: Int
    }

    /// Nodes on copies of one seeded store, sharing one Redis.
    final class Cluster: Sendable {
        let redis: RedisServerProcess
        let seed: Seed
        private let started = NIOLockedValueBox<[Node]>([])

        init(redis: RedisServerProcess, seed: Seed) {
            self.redis = redis
            self.seed = seed
        }

        var nodes: [Node] { started.withLockedValue { $0 } }

        @discardableResult
        func add() async throws -> Node {
            let node = try await seed.node(redis)
            started.withLockedValue { $0.append(node) }
            return node
        }

        func killAll() {
            for node in nodes { node.process.kill() }
        }
    }

    /// Runs `body` with `count` nodes started, and kills them and Redis after.
    static func withCluster(_ count: Int, _ body: (Cluster) async throws -> Void) async throws {
        let redis = try await RedisServerProcess.start()
        defer { redis.stop() }
        let cluster = Cluster(redis: redis, seed: try await Seed.make())
        defer { cluster.killAll() }
        for _ in 0..<count { try await cluster.add() }
        try await body(cluster)
    }

    /// The ids of the nodes `GET /admin/v1/info` on `node` lists.
    static func liveNodes(_ node: Node, admin: String) async throws -> Set<String> {
        let info = try await httpExchange(port: node.port, "GET", "/admin/v1/info", token: admin)
        let nodes = info.json.object["nodes"] as? [[String: Any]] ?? []
        return Set(nodes.compactMap { $0["id"] as? String })
    }

    @Test func revokingOnOneNodeClosesTheTokensConnectionsOnEveryNodeAndRefusesItEverywhere() async throws {
        try await Self.withCluster(3) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            var clients: [Client] = []
            for node in nodes {
                let client = try await Client.connect(port: node.port, token: seed.client)
                try await client.subscribe("c.revoke")
                clients.append(client)
            }
            let revoked = try await httpExchange(
                port: nodes[0].port, "DELETE", "/admin/v1/tokens/\(seed.clientID)", token: seed.admin)
            #expect(revoked.status == 200, "\(revoked)")
            // Within a second by design; bounded more loosely for a loaded machine.
            for (index, client) in clients.enumerated() {
                let close = try await client.waitForClose(timeout: .seconds(5))
                #expect(close.code == Broker.CloseCodes.tokenRevoked, "node \(index): \(close)")
            }
            for node in nodes {
                let refusal = try await Client.refusal(port: node.port, token: seed.client)
                #expect(refusal.status == 401 && refusal.body.contains("revoked"), "\(refusal)")
            }
            // A node that was not running learns the revocation from Redis before it listens,
            // though its own copy of the store still holds the token as active.
            let late = try await cluster.add()
            let refusal = try await Client.refusal(port: late.port, token: seed.client)
            #expect(refusal.status == 401 && refusal.body.contains("revoked"), "\(refusal)")
        }
    }

    /// A token created at run time on one node is accepted on the others (looked up in
    /// Redis), and once revoked on one, refused on all, even on a node that had never seen it.
    @Test func aTokenCreatedOnOneNodeWorksOnEveryNodeUntilRevoked() async throws {
        try await Self.withCluster(3) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            let created = try await httpExchange(
                port: nodes[0].port, "POST", "/admin/v1/tokens", token: seed.admin,
                body: #"{"name":"made-on-a","subscribe":["c.>"],"publish":["c.>"]}"#)
            guard created.status == 201, let token = created.json["token"], let id = created.json["id"] else {
                throw TestFailure("\(created)")
            }
            var clients: [Client] = []
            for node in nodes.prefix(2) {
                let client = try await Client.connect(port: node.port, token: token)
                try await client.subscribe("c.made")
                clients.append(client)
            }
            let revoked = try await httpExchange(port: nodes[1].port, "DELETE", "/admin/v1/tokens/\(id)", token: seed.admin)
            #expect(revoked.status == 200, "\(revoked)")
            for client in clients {
                #expect(try await client.waitForClose(timeout: .seconds(5)).code == Broker.CloseCodes.tokenRevoked)
            }
            // Node C never saw the token: it finds it in Redis, with its revocation.
            for node in [nodes[0], nodes[2]] {
                let refusal = try await Client.refusal(port: node.port, token: token)
                #expect(refusal.status == 401 && refusal.body.contains("revoked"), "\(refusal)")
            }
        }
    }

    /// `switchboard token revoke --database` on one node's store file, with no server: the
    /// node picks the change up from its store and tells the others.
    @Test func aRevocationInOneNodesStoreFileReachesEveryNode() async throws {
        try await Self.withCluster(2) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            let other = try await Client.connect(port: nodes[1].port, token: seed.client)
            try await other.subscribe("c.file")
            guard let directory = nodes[0].process.process.currentDirectoryURL else { throw TestFailure("no directory") }
            let revoke = try SwitchboardProcess.start(
                ["token", "revoke", seed.clientID, "--database", "switchboard.db"], in: directory)
            #expect(try await revoke.exitStatus() == 0, "\(revoke.stderr.text)")
            let close = try await other.waitForClose(timeout: .seconds(5))
            #expect(close.code == Broker.CloseCodes.tokenRevoked, "\(close)")
        }
    }

    /// A revocation made while Redis is down is applied where it was made at once, and
    /// reaches the other nodes once Redis is back.
    @Test func aRevocationMadeWhileRedisIsDownReachesTheOtherNodesWhenItIsBack() async throws {
        try await Self.withCluster(2) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            let here = try await Client.connect(port: nodes[0].port, token: seed.client)
            let there = try await Client.connect(port: nodes[1].port, token: seed.client)
            for client in [here, there] { try await client.subscribe("c.outage") }
            try await cluster.redis.kill()
            let revoked = try await httpExchange(
                port: nodes[0].port, "DELETE", "/admin/v1/tokens/\(seed.clientID)", token: seed.admin)
            #expect(revoked.status == 200, "\(revoked)")
            #expect(try await here.waitForClose(timeout: .seconds(5)).code == Broker.CloseCodes.tokenRevoked)
            // Still served by the other node, which cannot have heard of it.
            try await there.expectNothingPending()
            try await cluster.redis.launch()
            // Reconnects back off up to 2 s, then the next heartbeat synchronises.
            let close = try await there.waitForClose(timeout: .seconds(15))
            #expect(close.code == Broker.CloseCodes.tokenRevoked, "\(close)")
        }
    }

    @Test func aRetentionChangeOnOneNodeReachesEveryNodeAndNewOnes() async throws {
        try await Self.withCluster(2) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            // As the API shows rules: ages in milliseconds.
            let rules = ["c.> count=50 age=3600000ms", "d.* age=600000ms"]
            let answer = try await httpExchange(
                port: nodes[0].port, "PUT", "/admin/v1/retention", token: seed.admin, body: #"{"rules":["c.> count=50 age=1h","d.* age=10m"]}"#)
            #expect(answer.status == 200 && answer.json.object["rules"] as? [String] == rules, "\(answer)")
            try await eventually("the rules on the other node", timeout: .seconds(5)) {
                let seen = try await httpExchange(port: nodes[1].port, "GET", "/admin/v1/retention", token: seed.admin)
                return seen.json.object["rules"] as? [String] == rules
            }
            let late = try await cluster.add()
            let seen = try await httpExchange(port: late.port, "GET", "/admin/v1/retention", token: seed.admin)
            #expect(seen.json.object["rules"] as? [String] == rules, "\(seen)")
        }
    }

    @Test func infoListsTheLiveNodesAndDropsAKilledOne() async throws {
        try await Self.withCluster(3) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            var ids: [String] = []
            for node in nodes {
                let info = try await httpExchange(port: node.port, "GET", "/admin/v1/info", token: seed.admin)
                guard let id = info.json["node"] else { throw TestFailure("no node id in \(info)") }
                ids.append(id)
            }
            for node in nodes {
                try await eventually("every node listed", timeout: .seconds(10)) {
                    try await Self.liveNodes(node, admin: seed.admin) == Set(ids)
                }
            }
            let info = try await httpExchange(port: nodes[1].port, "GET", "/admin/v1/info", token: seed.admin)
            let listed = info.json.object["nodes"] as? [[String: Any]] ?? []
            #expect(listed.first?["id"] as? String == ids[1], "this node first: \(info)")
            #expect(listed.allSatisfy { ($0["address"] as? String)?.hasPrefix("127.0.0.1:") == true }, "\(info)")

            nodes[2].process.kill()
            _ = try await nodes[2].process.exitStatus()
            // Dropped after three missed heartbeats (1 s apart).
            for node in nodes.prefix(2) {
                try await eventually("the killed node dropped", timeout: .seconds(10)) {
                    try await Self.liveNodes(node, admin: seed.admin) == Set(ids.prefix(2))
                }
            }
        }
    }

    @Test func anAdminPublishReachesSubscribersOnOtherNodesWithTheClusterSeq() async throws {
        try await Self.withCluster(3) { cluster in
            let (nodes, seed) = (cluster.nodes, cluster.seed)
            let subscriber = try await Client.connect(port: nodes[1].port)
            try await subscriber.subscribe("c.admin")
            let publisher = try await Client.connect(port: nodes[2].port)
            #expect(try await publisher.publish("c.admin", "1") == 1)
            #expect(try await publisher.publish("c.admin", "2") == 2)
            let answer = try await httpExchange(
                port: nodes[0].port, "POST", "/admin/v1/publish", token: seed.admin, body: #"{"topic":"c.admin","data":3}"#)
            #expect(answer.status == 200 && answer.json.int("seq") == 3, "\(answer)")
            var seen: [(seq: Int?, data: Int?)] = []
            while seen.count < 3 {
                let message = try await subscriber.nextJSON()
                if message["op"] == "msg" { seen.append((message.int("seq"), message.int("data"))) }
            }
            #expect(seen.map(\.seq) == [1, 2, 3] && seen.map(\.data) == [1, 2, 3], "\(seen)")
            try await subscriber.expectNothingPending()
            await subscriber.close()
            await publisher.close()
        }
    }
}
