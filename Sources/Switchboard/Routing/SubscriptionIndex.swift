/// Maps subscription patterns to subscribers, answering "who wants topic T" in
/// O(segments × wildcard branching), independent of how many patterns are indexed.
///
/// A trie over pattern tokens. Each node has literal children (by segment), at most one
/// `*` child, the subscribers whose pattern ends here (`exact`) and the subscribers whose
/// pattern is this node's path followed by `>` (`rest`). Matching `a.b.c` walks, per
/// segment, at most two children of each live node (the literal one and `*`), collecting
/// `rest` sets along the way: only nodes on a path that can still match are touched.
///
/// Invariants:
/// - A subscriber appears at most once per pattern (set semantics); `insert` reports a
///   duplicate, `remove` reports a miss.
/// - Every node except the root is reachable and non-empty: removal prunes nodes that have
///   no subscribers and no children, and recycles their slots, so memory follows the live
///   pattern set.
/// - A value type with no shared mutable storage (the nodes live in an array), so a hub
///   owns one per event loop with no locks; it is `Sendable` when `Subscriber` is.
package struct SubscriptionIndex<Subscriber: Hashable> {
    struct Node {
        var literals: [Substring: Int32] = [:]
        var single: Int32 = -1
        var exact: Set<Subscriber> = []
        var rest: Set<Subscriber> = []

        var isEmpty: Bool { literals.isEmpty && single < 0 && exact.isEmpty && rest.isEmpty }
    }

    private var nodes: [Node] = [Node()]
    private var freeSlots: [Int32] = []
    /// Number of (pattern, subscriber) pairs.
    package private(set) var count = 0

    package init() {}

    package var isEmpty: Bool { count == 0 }

    /// Nodes currently in the trie, the root included (for tests and metrics).
    package var nodeCount: Int { nodes.count - freeSlots.count }

    // MARK: Insert

    /// Adds `subscriber` under `pattern`. Returns false when it was already there.
    @discardableResult
    package mutating func insert(_ pattern: TopicPattern, _ subscriber: Subscriber) -> Bool {
        var node: Int32 = 0
        for token in pattern.tokens {
            switch token {
            case .rest:
                let inserted = nodes[Int(node)].rest.insert(subscriber).inserted
                if inserted { count += 1 }
                return inserted
            case .single:
                if nodes[Int(node)].single < 0 {
                    let child = allocate()
                    nodes[Int(node)].single = child
                }
                node = nodes[Int(node)].single
            case .literal(let segment):
                if let child = nodes[Int(node)].literals[segment] {
                    node = child
                } else {
                    let child = allocate()
                    // A fresh String so the key does not keep the whole pattern name alive.
                    nodes[Int(node)].literals[Substring(String(segment))] = child
                    node = child
                }
            }
        }
        let inserted = nodes[Int(node)].exact.insert(subscriber).inserted
        if inserted { count += 1 }
        return inserted
    }

    private mutating func allocate() -> Int32 {
        if let slot = freeSlots.popLast() {
            nodes[Int(slot)] = Node()
            return slot
        }
        nodes.append(Node())
        return Int32(nodes.count - 1)
    }

    // MARK: Remove

    /// Removes `subscriber` from `pattern`. Returns false when it was not there.
    @discardableResult
    package mutating func remove(_ pattern: TopicPattern, _ subscriber: Subscriber) -> Bool {
        // The path of (node, token taken from it) to prune on the way back.
        var path: [(node: Int32, token: TopicPattern.Token)] = []
        path.reserveCapacity(pattern.tokens.count)
        var node: Int32 = 0
        var removed = false
        walk: for token in pattern.tokens {
            let child: Int32
            switch token {
            case .rest:
                removed = nodes[Int(node)].rest.remove(subscriber) != nil
                break walk
            case .single: child = nodes[Int(node)].single
            case .literal(let segment): child = nodes[Int(node)].literals[segment] ?? -1
            }
            guard child >= 0 else { return false }
            path.append((node, token))
            node = child
        }
        if case .rest? = pattern.tokens.last {
        } else {
            removed = nodes[Int(node)].exact.remove(subscriber) != nil
        }
        guard removed else { return false }
        count -= 1
        // Prune empty nodes bottom-up.
        var current = node
        while let (parent, token) = path.popLast(), nodes[Int(current)].isEmpty {
            switch token {
            case .single: nodes[Int(parent)].single = -1
            case .literal(let segment): nodes[Int(parent)].literals[segment] = nil
            case .rest: break
            }
            nodes[Int(current)] = Node()
            freeSlots.append(current)
            current = parent
        }
        return true
    }

    // MARK: Match

    /// Every subscriber with at least one pattern matching `topic`, each once.
    package func match(_ topic: Topic) -> Set<Subscriber> {
        var result = Set<Subscriber>()
        collectMatches(topic, into: &result)
        return result
    }

    /// Adds to `result` every subscriber with a pattern matching `topic` (deduplicated by
    /// the set). Reuse one set across calls (`removeAll(keepingCapacity: true)`) to avoid
    /// allocating per message. Returns how many trie nodes were visited.
    @discardableResult
    package func collectMatches(_ topic: Topic, into result: inout Set<Subscriber>) -> Int {
        var visited = 0
        nodes.withUnsafeBufferPointer { nodes in
            Self.visit(nodes, 0, topic.segments, 0, &result, &visited)
        }
        return visited
    }

    /// Calls `body` once per matching subscriber.
    package func forEachMatch(_ topic: Topic, _ body: (Subscriber) throws -> Void) rethrows {
        for subscriber in match(topic) { try body(subscriber) }
    }

    /// Calls `body` once per matching subscriber. When a single set of subscribers matches
    /// (one pattern node, the usual case), it is iterated in place: no hashing per subscriber.
    /// Otherwise the matches are deduplicated in `scratch` (reused, emptied before use).
    package func forEachMatch(_ topic: Topic, scratch: inout Set<Subscriber>, _ body: (Subscriber) -> Void) {
        var count = 0
        var only: (node: Int32, rest: Bool) = (-1, false)
        nodes.withUnsafeBufferPointer { nodes in
            Self.countMatchingSets(nodes, 0, topic.segments, 0, &count, &only)
        }
        if count == 0 { return }
        if count == 1 {
            nodes.withUnsafeBufferPointer { nodes in
                let i = Int(only.node)
                if only.rest {
                    for subscriber in nodes[i].rest { body(subscriber) }
                } else {
                    for subscriber in nodes[i].exact { body(subscriber) }
                }
            }
            return
        }
        scratch.removeAll(keepingCapacity: true)
        collectMatches(topic, into: &scratch)
        for subscriber in scratch { body(subscriber) }
    }

    /// Counts the non-empty subscriber sets matching (as `visit` collects them); remembers one.
    private static func countMatchingSets(
        _ nodes: UnsafeBufferPointer<Node>, _ index: Int32, _ segments: [Substring], _ depth: Int,
        _ count: inout Int, _ only: inout (node: Int32, rest: Bool)
    ) {
        let i = Int(index)
        if depth == segments.count {
            if !nodes[i].exact.isEmpty {
                count += 1
                only = (index, false)
            }
            return
        }
        if !nodes[i].rest.isEmpty {
            count += 1
            only = (index, true)
        }
        if !nodes[i].literals.isEmpty, let child = nodes[i].literals[segments[depth]] {
            countMatchingSets(nodes, child, segments, depth + 1, &count, &only)
        }
        let single = nodes[i].single
        if single >= 0 {
            countMatchingSets(nodes, single, segments, depth + 1, &count, &only)
        }
    }

    /// Reads nodes through the buffer so no `Node` (and its sets) is copied or retained.
    private static func visit(
        _ nodes: UnsafeBufferPointer<Node>, _ index: Int32, _ segments: [Substring], _ depth: Int,
        _ result: inout Set<Subscriber>, _ visited: inout Int
    ) {
        visited += 1
        let i = Int(index)
        if depth == segments.count {
            if !nodes[i].exact.isEmpty { result.formUnion(nodes[i].exact) }
            return
        }
        // `>` at this node consumes all remaining segments (at least one remains).
        if !nodes[i].rest.isEmpty { result.formUnion(nodes[i].rest) }
        if !nodes[i].literals.isEmpty, let child = nodes[i].literals[segments[depth]] {
            visit(nodes, child, segments, depth + 1, &result, &visited)
        }
        let single = nodes[i].single
        if single >= 0 {
            visit(nodes, single, segments, depth + 1, &result, &visited)
        }
    }

    /// Whether any subscriber has a pattern matching `topic` (stops at the first).
    package func hasMatch(_ topic: Topic) -> Bool {
        nodes.withUnsafeBufferPointer { Self.hasMatch($0, 0, topic.segments, 0) }
    }

    private static func hasMatch(
        _ nodes: UnsafeBufferPointer<Node>, _ index: Int32, _ segments: [Substring], _ depth: Int
    ) -> Bool {
        let i = Int(index)
        if depth == segments.count { return !nodes[i].exact.isEmpty }
        if !nodes[i].rest.isEmpty { return true }
        if let child = nodes[i].literals[segments[depth]], hasMatch(nodes, child, segments, depth + 1) {
            return true
        }
        return nodes[i].single >= 0 && hasMatch(nodes, nodes[i].single, segments, depth + 1)
    }
}

extension SubscriptionIndex: Sendable where Subscriber: Sendable {}
extension SubscriptionIndex.Node: Sendable where Subscriber: Sendable {}
