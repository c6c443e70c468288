import NIOCore
import NIOPosix
import SluiceCore

/// A key-value pair as etcd returns it.
public struct EtcdKeyValue: Sendable, Hashable {
    public var key: String
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
}

/// etcd v3 over its JSON gateway: base64 keys and values, 64-bit numbers as strings,
/// fields with default values left out. Calls go to one member at a time; when it fails the
/// next is tried, so any reachable member serves.
public actor EtcdClient {
    public let endpoints: [EtcdEndpoint]
    let group: EventLoopGroup
    private var connection: EtcdConnection?
    private var next = 0
    public var requestTimeout: TimeAmount = .seconds(5)
    /// How watches prove they are alive and how soon a silent one is replaced.
    public nonisolated let watchLiveness: EtcdWatchLiveness

    public init(
        endpoints: [EtcdEndpoint], group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        watchLiveness: EtcdWatchLiveness = EtcdWatchLiveness()
    ) {
        self.endpoints = endpoints
        self.group = group
        self.watchLiveness = watchLiveness
    }

    private func call(_ path: String, _ body: JSONValue) async throws -> JSONValue {
        guard !endpoints.isEmpty else { throw EtcdError(.unavailable, "no etcd endpoint configured") }
        var lastError: Error = EtcdError(.unavailable, "etcd unreachable")
        for _ in 0..<endpoints.count {
            do {
                let conn: EtcdConnection
                if let c = connection, c.isActive {
                    conn = c
                } else {
                    let endpoint = endpoints[next]
                    next = (next + 1) % endpoints.count
                    conn = try await EtcdConnection.connect(endpoint, group: group, timeout: .seconds(2))
                    connection = conn
                }
                return try await conn.post(path, body, timeout: requestTimeout)
            } catch let e as EtcdError where e.code != .unavailable {
                throw e
            } catch {
                lastError = error
                await connection?.close()
                connection = nil
            }
        }
        throw lastError is EtcdError ? lastError : EtcdError(.unavailable, "etcd unreachable: \(lastError)")
    }

    /// The end of the key range that holds every key starting with `prefix`.
    static func rangeEnd(_ prefix: String) -> [UInt8] {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return [0]
    }

    /// A 64-bit number as the gateway sends it (a string, or a plain number); 0 when absent
    /// or not one (the gateway leaves out fields that are 0).
    static func int64(_ value: JSONValue?) -> Int64 {
        switch value {
        case .string(let s)?: return Int64(s) ?? 0
        case .int(let i)?: return i
        default: return 0
        }
    }

    /// A revision: positive, or nil.
    static func revision(_ value: JSONValue?) -> Int64? {
        let r = int64(value)
        return r > 0 ? r : nil
    }

    static func keyValue(_ json: JSONValue) throws -> EtcdKeyValue {
        guard let k = json["key"]?.stringValue, let key = Base64.decode(k) else {
            throw EtcdError(.protocolError, "etcd returned a key-value without a key, or a key that is not base64")
        }
        var value: [UInt8] = []
        if let v = json["value"] {  // absent: empty
            guard let text = v.stringValue, let decoded = Base64.decode(text) else {
                throw EtcdError(.protocolError, "etcd returned a value that is not base64 at \(String(decoding: key, as: UTF8.self))")
            }
            value = decoded
        }
        return EtcdKeyValue(
            key: String(decoding: key, as: UTF8.self), value: value, createRevision: int64(json["create_revision"]),
            modRevision: int64(json["mod_revision"]))
    }

    /// Every key under `prefix`, and the revision they were read at.
    public func range(prefix: String) async throws -> (kvs: [EtcdKeyValue], revision: Int64) {
        let (kvs, _, revision) = try await rangeReportingUndecodable(prefix: prefix)
        return (kvs, revision)
    }

    /// Every key under `prefix`, the key-values etcd sent that do not decode (each described),
    /// and the revision they were read at.
    public func rangeReportingUndecodable(prefix: String) async throws -> (kvs: [EtcdKeyValue], undecodable: [String], revision: Int64) {
        let r = try await call(
            "/v3/kv/range", ["key": .string(Base64.encode(prefix)), "range_end": .string(Base64.encode(Self.rangeEnd(prefix)))])
        var kvs: [EtcdKeyValue] = []
        var undecodable: [String] = []
        for json in r["kvs"]?.arrayValue ?? [] {
            do { kvs.append(try Self.keyValue(json)) } catch { undecodable.append("\(error)") }
        }
        guard let revision = Self.revision(r["header"]?["revision"]) else {
            throw EtcdError(.protocolError, "etcd answered a range without a revision")
        }
        return (kvs, undecodable, revision)
    }

    /// The store's current revision.
    public func revision() async throws -> Int64 {
        let r = try await call("/v3/kv/range", ["key": .string(Base64.encode("\u{0}")), "count_only": true])
        guard let revision = Self.revision(r["header"]?["revision"]) else {
            throw EtcdError(.protocolError, "etcd answered a range without a revision")
        }
        return revision
    }

    /// Puts `value` at `key` only if its mod revision is `expectedModRevision` (0: only if
    /// absent). Returns the stored key-value, or nil when the comparison failed.
    public func put(
        _ key: String, _ value: [UInt8], ifModRevision expectedModRevision: Int64?, requiringKeys: [String] = [],
        lease: Int64? = nil
    ) async throws -> EtcdKeyValue? {
        let k = JSONValue.string(Base64.encode(key))
        var compare: [JSONValue] = requiringKeys.map { required in
            ["key": .string(Base64.encode(required)), "target": "CREATE", "result": "GREATER", "create_revision": .string("0")]
        }
        if let expected = expectedModRevision {
            compare.append(
                expected == 0
                    ? ["key": k, "target": "CREATE", "result": "EQUAL", "create_revision": .string("0")]
                    : ["key": k, "target": "MOD", "result": "EQUAL", "mod_revision": .string(String(expected))])
        }
        let r = try await call(
            "/v3/kv/txn",
            [
                "compare": .array(compare),
                "success": [
                    ["request_put": lease.map { ["key": k, "value": .string(Base64.encode(value)), "lease": .string(String($0))] }
                        ?? ["key": k, "value": .string(Base64.encode(value))]],
                    ["request_range": ["key": k]],
                ],
            ])
        guard r["succeeded"] == .bool(true) else { return nil }
        let responses = r["responses"]?.arrayValue ?? []
        guard responses.count == 2, let kv = responses[1]["response_range"]?["kvs"]?.arrayValue?.first else {
            throw EtcdError(.protocolError, "etcd txn answered without the written key")
        }
        return try Self.keyValue(kv)
    }

    /// A lease that expires after `ttl` seconds; keys put with it are deleted then.
    public func grantLease(ttl: Int) async throws -> Int64 {
        let r = try await call("/v3/lease/grant", ["TTL": .string(String(ttl))])
        let id = Self.int64(r["ID"])
        guard id != 0 else { throw EtcdError(.protocolError, "etcd granted no lease: \(r)") }
        return id
    }

    /// Deletes `key`. Returns the revision of the delete, or nil when it was not there.
    public func delete(_ key: String) async throws -> Int64? {
        let r = try await call("/v3/kv/deleterange", ["key": .string(Base64.encode(key))])
        guard Self.int64(r["deleted"]) > 0 else { return nil }
        return Self.int64(r["header"]?["revision"])
    }

    public func close() async {
        await connection?.close()
        connection = nil
    }
}
