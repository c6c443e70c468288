import SluiceCore

/// Server names to certificates, as a snapshot holds them: an exact name first, then the
/// wildcard for the name's parent (`*.example.com` covers `a.example.com`, one label, and
/// neither `example.com` nor `a.b.example.com`). When two objects claim one name, the one
/// with the smaller id serves it, so the choice does not depend on write order.
public final class SNIIndex: Sendable {
    private let exact: [String: ServerIdentity]
    /// Keyed by the suffix after `*.`.
    private let wildcard: [String: ServerIdentity]
    /// Every enabled server identity, by id.
    public let identities: [String: ServerIdentity]

    public static let empty = SNIIndex(identities: [:])

    public init(identities: [String: ServerIdentity]) {
        self.identities = identities
        var exact: [String: ServerIdentity] = [:]
        var wildcard: [String: ServerIdentity] = [:]
        for id in identities.keys.sorted(by: SNIIndex.idOrder) {
            guard let identity = identities[id] else { continue }
            for name in identity.snis {
                if name.hasPrefix("*.") {
                    let suffix = String(name.dropFirst(2))
                    if wildcard[suffix] == nil { wildcard[suffix] = identity }
                } else if exact[name] == nil {
                    exact[name] = identity
                }
            }
        }
        self.exact = exact
        self.wildcard = wildcard
    }

    public var isEmpty: Bool { identities.isEmpty }

    /// The identity serving `serverName` (as the ClientHello gave it: lower-cased, no
    /// trailing dot), or nil.
    public func lookup(_ serverName: String) -> ServerIdentity? {
        if let i = exact[serverName] { return i }
        guard let dot = serverName.utf8.firstIndex(of: UInt8(ascii: ".")) else { return nil }
        let parent = serverName[serverName.index(after: dot)...]
        guard !parent.isEmpty else { return nil }
        return wildcard[String(parent)]
    }

    /// Numeric ids in numeric order, before other ids in byte order.
    public static func idOrder(_ a: String, _ b: String) -> Bool {
        switch (UInt64(a), UInt64(b)) {
        case (let x?, let y?): return x < y
        case (.some, nil): return true
        case (nil, .some): return false
        case (nil, nil): return a < b
        }
    }
}

/// Compiles the `ssls` objects of successive configs, keeping the identity of every object
/// that did not change: a write to one certificate parses that one only, and every other
/// keeps its contexts (and its clients' session tickets).
public final class TLSCompiler {
    public let keyring: Keyring?
    public let alpn: [String]
    private var compiled: [String: ServerIdentity] = [:]
    /// Objects that did not compile (stored by another writer or under another keyring),
    /// with why; the rest are served.
    public private(set) var errors: [String: ConfigError] = [:]
    private var index = SNIIndex.empty

    public init(keyring: Keyring? = nil, alpn: [String] = ["http/1.1"]) {
        self.keyring = keyring
        self.alpn = alpn
    }

    /// The index for `ssls`; only objects that are new or changed since the last call are
    /// compiled. `changed`: the ids written since then, or nil to compare every object.
    public func compile(_ ssls: [String: SSLObject], changed: Set<String>? = nil) -> SNIIndex {
        var next: [String: ServerIdentity] = [:]
        next.reserveCapacity(ssls.count)
        var touched = false
        for (id, object) in ssls where object.kind == .server && object.status == 1 {
            if let old = compiled[id] {
                // Told what changed, an object not named did not; otherwise compare.
                if let changed, !changed.contains(id) {
                    next[id] = old
                    continue
                }
                if old.source == object {
                    next[id] = old
                    continue
                }
            }
            touched = true
            do throws(ConfigError) {
                next[id] = try ServerIdentity.compile(object, id: id, keyring: keyring, alpn: alpn, path: "ssls[\(id)]")
                errors[id] = nil
            } catch {
                errors[id] = error
            }
        }
        for id in errors.keys where ssls[id] == nil { errors[id] = nil }
        if !touched && next.count == compiled.count { return index }
        compiled = next
        index = SNIIndex(identities: next)
        return index
    }
}
