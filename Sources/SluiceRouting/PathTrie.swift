/// A radix tree over path bytes. Each node holds the routes whose pattern ends exactly there
/// (`exact`) and those that take any tail from there (`prefix`, for `*`). A `:param` segment
/// is a separate child that swallows one path segment. Lookup walks the request path once,
/// so its cost depends on the path length and the number of matching patterns, not on how
/// many routes exist.
final class TrieNode {
    var label: [UInt8]
    var children: [TrieNode] = []
    var firstBytes: [UInt8] = []
    var paramChild: TrieNode?
    var exact: [Int32] = []
    var prefix: [Int32] = []

    init(label: [UInt8]) { self.label = label }

    /// A shallow copy: the same children, entries and label, in a node that may be changed
    /// without touching tries that share the original.
    func copy() -> TrieNode {
        let n = TrieNode(label: label)
        n.children = children
        n.firstBytes = firstBytes
        n.paramChild = paramChild
        n.exact = exact
        n.prefix = prefix
        return n
    }

    func child(startingWith byte: UInt8) -> Int? {
        // Children are few per node; a linear scan over a byte array is cache-friendly.
        for i in 0..<firstBytes.count where firstBytes[i] == byte { return i }
        return nil
    }

    /// Returns the node for `bytes` below this one, creating and splitting nodes as needed.
    /// With `copying`, every existing node entered is replaced by a copy first (path copying),
    /// so a trie shared with a live snapshot is never changed; `self` must already be a copy.
    func descend(_ bytes: ArraySlice<UInt8>, copying: Bool) -> TrieNode {
        guard let first = bytes.first else { return self }
        guard let idx = child(startingWith: first) else {
            let node = TrieNode(label: Array(bytes))
            children.append(node)
            firstBytes.append(first)
            return node
        }
        var c = children[idx]
        if copying {
            c = c.copy()
            children[idx] = c
        }
        var common = 0
        let maxCommon = min(c.label.count, bytes.count)
        while common < maxCommon && c.label[common] == bytes[bytes.startIndex + common] { common += 1 }
        if common < c.label.count {
            // Split c: a new node with the common part, c keeps the rest.
            let mid = TrieNode(label: Array(c.label[0..<common]))
            c.label = Array(c.label[common...])
            mid.children = [c]
            mid.firstBytes = [c.label[0]]
            children[idx] = mid
            return mid.descend(bytes.dropFirst(common), copying: copying)
        }
        return c.descend(bytes.dropFirst(common), copying: copying)
    }
}

/// One way a pattern matched: the entry, how specific the pattern is, and whether it was exact.
struct Candidate {
    var entry: Int32
    var length: Int32
    var exact: Bool
}

/// A small stack buffer of candidates with a heap overflow for the rare request that matches
/// many patterns.
struct CandidateBuffer: ~Copyable {
    let storage: UnsafeMutableBufferPointer<Candidate>
    var count = 0
    var overflow: [Candidate] = []

    init(storage: UnsafeMutableBufferPointer<Candidate>) { self.storage = storage }

    mutating func append(_ c: Candidate) {
        if count < storage.count {
            storage[count] = c
            count += 1
        } else {
            overflow.append(c)
        }
    }
}

struct PathTrie {
    let root: TrieNode

    init(root: TrieNode = TrieNode(label: [])) { self.root = root }

    /// A trie that shares every node with this one but its root, ready for path-copying
    /// changes.
    func copyForUpdate() -> PathTrie { PathTrie(root: root.copy()) }

    /// Inserts `pattern` for entry `entry`. The pattern has been validated by SluiceCore.
    func insert(_ pattern: String, entry: Int32, copying: Bool = false) {
        let (node, isPrefix) = locate(pattern, copying: copying)
        if isPrefix { node.prefix.append(entry) } else { node.exact.append(entry) }
    }

    /// Removes entry `entry` from `pattern`'s node (path-copying).
    func remove(_ pattern: String, entry: Int32) {
        let (node, isPrefix) = locate(pattern, copying: true)
        if isPrefix { node.prefix.removeAll { $0 == entry } } else { node.exact.removeAll { $0 == entry } }
    }

    /// The node where `pattern` ends, and whether it ends in `*`.
    private func locate(_ pattern: String, copying: Bool) -> (TrieNode, Bool) {
        let bytes = Array(pattern.utf8)
        var node = root
        var start = 0
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "*") {
                return (node.descend(bytes[start..<i], copying: copying), true)
            }
            if c == UInt8(ascii: ":") && i > 0 && bytes[i - 1] == UInt8(ascii: "/") {
                node = node.descend(bytes[start..<i], copying: copying)
                if let p = node.paramChild {
                    if copying {
                        let fresh = p.copy()
                        node.paramChild = fresh
                        node = fresh
                    } else {
                        node = p
                    }
                } else {
                    let fresh = TrieNode(label: [])
                    node.paramChild = fresh
                    node = fresh
                }
                var j = i + 1
                while j < bytes.count && bytes[j] != UInt8(ascii: "/") { j += 1 }
                i = j
                start = j
                continue
            }
            i += 1
        }
        return (node.descend(bytes[start..<bytes.count], copying: copying), false)
    }

    func collect(_ path: UnsafeBufferPointer<UInt8>, into buffer: inout CandidateBuffer) {
        Self.walk(root, path, 0, 0, &buffer)
    }

    /// `pos` is where `node`'s label starts in `path`; `specificity` counts the bytes matched
    /// literally so far (parameters count one).
    private static func walk(
        _ node: TrieNode, _ path: UnsafeBufferPointer<UInt8>, _ pos: Int, _ specificity: Int,
        _ buffer: inout CandidateBuffer
    ) {
        let label = node.label
        if label.count > path.count - pos { return }
        for i in 0..<label.count where label[i] != path[pos + i] { return }
        let end = pos + label.count
        let spec = specificity + label.count
        for e in node.prefix { buffer.append(Candidate(entry: e, length: Int32(spec), exact: false)) }
        if end == path.count {
            for e in node.exact { buffer.append(Candidate(entry: e, length: Int32(spec), exact: true)) }
            return
        }
        if let param = node.paramChild {
            var segEnd = end
            while segEnd < path.count && path[segEnd] != UInt8(ascii: "/") { segEnd += 1 }
            if segEnd > end { walk(param, path, segEnd, spec + 1, &buffer) }
        }
        if let idx = node.child(startingWith: path[end]) {
            walk(node.children[idx], path, end, spec, &buffer)
        }
    }
}
