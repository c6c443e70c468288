import SluiceCore

/// Methods as a bit set, so a route's method check is one AND.
public struct MethodSet: Sendable, Hashable {
    public var bits: UInt16

    public static let any = MethodSet(bits: 0)

    public init(bits: UInt16) { self.bits = bits }

    public init(_ names: [String]) {
        var b: UInt16 = 0
        for n in names { b |= MethodSet.bit(for: n) }
        bits = b
    }

    @inline(__always)
    public static func bit(for method: String) -> UInt16 {
        switch method {
        case "GET": return 1 << 0
        case "POST": return 1 << 1
        case "PUT": return 1 << 2
        case "DELETE": return 1 << 3
        case "PATCH": return 1 << 4
        case "HEAD": return 1 << 5
        case "OPTIONS": return 1 << 6
        case "CONNECT": return 1 << 7
        case "TRACE": return 1 << 8
        case "PURGE": return 1 << 9
        default: return 1 << 15
        }
    }

    @inline(__always)
    public func allows(_ methodBit: UInt16) -> Bool { bits == 0 || bits & methodBit != 0 }
}

/// What the router needs from a request. `path` is already normalized, `host` lower-cased
/// without a port.
public struct RouteRequest {
    public var path: String
    public var host: String?
    public var method: String
    public var remoteAddress: IPAddress?
    public var variables: any RequestVariableSource

    public init(path: String, host: String?, method: String, remoteAddress: IPAddress?, variables: any RequestVariableSource) {
        self.path = path
        self.host = host
        self.method = method
        self.remoteAddress = remoteAddress
        self.variables = variables
    }
}

/// A compiled, immutable route table. Entries carry an integer `target` (the caller's index
/// for what the route leads to), which keeps the router non-generic: a generic class used
/// from another module would look its metadata up at run time on every request.
///
/// Order of precedence, as APISIX users expect it: routes with a matching exact host, then
/// routes with a matching wildcard host (longest suffix first), then routes with no host;
/// within each, the longest path pattern first, then an exact pattern before a prefix one,
/// then the highest `priority`, then the route id.
public final class Router: Sendable {
    /// One route as the table holds it. A class, shared between a table and the tables
    /// derived from it: deriving copies one reference per entry, not every field.
    public final class Entry: Sendable {
        public let id: String
        public let paths: [String]
        public let hosts: [String]
        public let methods: MethodSet
        public let remoteAddrs: [CIDR]
        public let vars: VarsExpression?
        public let priority: Int
        public let target: Int

        public init(
            id: String, paths: [String], hosts: [String] = [], methods: MethodSet = .any, remoteAddrs: [CIDR] = [],
            vars: VarsExpression? = nil, priority: Int = 0, target: Int
        ) {
            self.id = id
            self.paths = paths
            self.hosts = hosts
            self.methods = methods
            self.remoteAddrs = remoteAddrs
            self.vars = vars
            self.priority = priority
            self.target = target
        }
    }

    public let entries: [Entry]
    // The tries are built once in init and never mutated afterwards.
    nonisolated(unsafe) private let anyHost: PathTrie
    nonisolated(unsafe) private let exactHosts: [String: PathTrie]
    nonisolated(unsafe) private let wildcardHosts: [String: PathTrie]
    private let wildcardSuffixLengths: [Int]

    /// Entries removed by `updating` that are still in `entries` (no trie refers to them).
    public let removedCount: Int

    private init(
        entries: [Entry], removedCount: Int, anyHost: PathTrie, exactHosts: [String: PathTrie],
        wildcardHosts: [String: PathTrie]
    ) {
        self.entries = entries
        self.removedCount = removedCount
        self.anyHost = anyHost
        self.exactHosts = exactHosts
        self.wildcardHosts = wildcardHosts
        self.wildcardSuffixLengths = Set(wildcardHosts.keys.map { $0.utf8.count }).sorted(by: >)
    }

    /// A new table with the entries at `removing` taken out and `adding` appended (at indices
    /// `entries.count`, `entries.count + 1`, ...). Only the trie paths of those entries are
    /// copied; everything else is shared with this table, which stays valid and unchanged, so
    /// a change costs O(its paths), not O(routes). Removed entries leave a hole in `entries`
    /// (counted in `removedCount`) until the next full build.
    public func updating(removing: [Int], adding: [Entry]) -> Router {
        var entries = self.entries
        var anyHost: PathTrie? = nil
        var exactHosts = self.exactHosts
        var wildcardHosts = self.wildcardHosts
        var fresh = Set<ObjectIdentifier>()

        func trie(for host: String?) -> PathTrie {
            guard let host else {
                if let t = anyHost { return t }
                let t = self.anyHost.copyForUpdate()
                anyHost = t
                return t
            }
            let wildcard = host.hasPrefix("*")
            let key = wildcard ? String(host.dropFirst()) : host
            let existing = wildcard ? wildcardHosts[key] : exactHosts[key]
            if let existing, fresh.contains(ObjectIdentifier(existing.root)) { return existing }
            let t = existing?.copyForUpdate() ?? PathTrie()
            fresh.insert(ObjectIdentifier(t.root))
            if wildcard { wildcardHosts[key] = t } else { exactHosts[key] = t }
            return t
        }

        var removed = removedCount
        for index in removing where entries.indices.contains(index) && !entries[index].paths.isEmpty {
            let old = entries[index]
            for host in old.hosts.isEmpty ? [nil] : old.hosts.map({ Optional($0) }) {
                let t = trie(for: host)
                for path in old.paths { t.remove(path, entry: Int32(index)) }
            }
            entries[index] = Entry(id: old.id, paths: [], target: old.target)
            removed += 1
        }
        for entry in adding {
            let index = Int32(entries.count)
            entries.append(entry)
            for host in entry.hosts.isEmpty ? [nil] : entry.hosts.map({ Optional($0) }) {
                let t = trie(for: host)
                for path in entry.paths { t.insert(path, entry: index, copying: true) }
            }
        }
        return Router(
            entries: entries, removedCount: removed, anyHost: anyHost ?? self.anyHost, exactHosts: exactHosts,
            wildcardHosts: wildcardHosts)
    }

    public init(entries: [Entry]) {
        self.entries = entries
        self.removedCount = 0
        let anyHost = PathTrie()
        var exactHosts: [String: PathTrie] = [:]
        var wildcardHosts: [String: PathTrie] = [:]
        for (index, entry) in entries.enumerated() {
            let e = Int32(index)
            if entry.hosts.isEmpty {
                for p in entry.paths { anyHost.insert(p, entry: e) }
                continue
            }
            for host in entry.hosts {
                let trie: PathTrie
                if host.hasPrefix("*") {
                    let suffix = String(host.dropFirst())
                    if let t = wildcardHosts[suffix] { trie = t } else { trie = PathTrie(); wildcardHosts[suffix] = trie }
                } else {
                    if let t = exactHosts[host] { trie = t } else { trie = PathTrie(); exactHosts[host] = trie }
                }
                for p in entry.paths { trie.insert(p, entry: e) }
            }
        }
        self.anyHost = anyHost
        self.exactHosts = exactHosts
        self.wildcardHosts = wildcardHosts
        self.wildcardSuffixLengths = Set(wildcardHosts.keys.map { $0.utf8.count }).sorted(by: >)
    }

    public var isEmpty: Bool { entries.isEmpty }

    /// The first route that takes the request, or nil.
    public func match(_ request: RouteRequest) -> Entry? {
        matchIndex(request).map { entries[$0] }
    }

    /// The index in `entries` of the first route that takes the request, or nil. The proxy
    /// uses this form: returning an `Entry` copies (and retains) all its fields.
    public func matchIndex(_ request: RouteRequest) -> Int? {
        let methodBit = MethodSet.bit(for: request.method)
        var path = request.path
        return path.withUTF8 { bytes -> Int? in
            if let host = request.host, !host.isEmpty {
                if let trie = exactHosts[host], let e = find(trie, bytes, methodBit, request) { return e }
                if !wildcardSuffixLengths.isEmpty {
                    let utf8 = host.utf8
                    for length in wildcardSuffixLengths where length < utf8.count {
                        let suffix = String(Substring(utf8.suffix(length)))
                        if let trie = wildcardHosts[suffix], let e = find(trie, bytes, methodBit, request) { return e }
                    }
                }
            }
            return find(anyHost, bytes, methodBit, request)
        }
    }

    private func find(
        _ trie: PathTrie, _ path: UnsafeBufferPointer<UInt8>, _ methodBit: UInt16, _ request: RouteRequest
    ) -> Int? {
        withUnsafeTemporaryAllocation(of: Candidate.self, capacity: 16) { storage -> Int? in
            var buffer = CandidateBuffer(storage: storage)
            trie.collect(path, into: &buffer)
            if buffer.count == 0 { return nil }
            let all = UnsafeMutableBufferPointer(rebasing: storage[0..<buffer.count])
            if !buffer.overflow.isEmpty {
                var merged = Array(all) + buffer.overflow
                merged.sort(by: precedes)
                for c in merged {
                    if let e = check(c, methodBit, request) { return e }
                }
                return nil
            }
            // Insertion sort: candidate lists are tiny.
            if all.count > 1 {
                for i in 1..<all.count {
                    let x = all[i]
                    var j = i - 1
                    while j >= 0 && precedes(x, all[j]) {
                        all[j + 1] = all[j]
                        j -= 1
                    }
                    all[j + 1] = x
                }
            }
            for c in all {
                if let e = check(c, methodBit, request) { return e }
            }
            return nil
        }
    }

    @inline(__always)
    private func precedes(_ a: Candidate, _ b: Candidate) -> Bool {
        if a.length != b.length { return a.length > b.length }
        // An exact path before a prefix of the same length, whatever the priorities: radixtree
        // looks exact paths up before it walks the prefixes (`/hello` beats `/hello*` at
        // priority 10 for the request `/hello`).
        if a.exact != b.exact { return a.exact }
        let pa = entries[Int(a.entry)].priority, pb = entries[Int(b.entry)].priority
        if pa != pb { return pa > pb }
        // Full ties go by route id, not position: a table built at once and one changed
        // incrementally must choose the same route.
        let ia = entries[Int(a.entry)].id, ib = entries[Int(b.entry)].id
        if ia != ib { return ia < ib }
        return a.entry < b.entry
    }

    @inline(__always)
    private func check(_ c: Candidate, _ methodBit: UInt16, _ request: RouteRequest) -> Int? {
        let i = Int(c.entry)
        guard entries[i].methods.allows(methodBit) else { return nil }
        if !entries[i].remoteAddrs.isEmpty {
            guard let addr = request.remoteAddress, entries[i].remoteAddrs.contains(where: { $0.contains(addr) }) else { return nil }
        }
        if let vars = entries[i].vars, !vars.evaluate(request.variables) { return nil }
        return i
    }
}
