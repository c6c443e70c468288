import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceHTTPClient
import SluiceStore

/// Why a write to the gateway failed, and whether trying again can help.
public struct GatewayWriteError: Error, Sendable, CustomStringConvertible {
    /// The gateway refused the object (e.g. 400 naming the field): retrying the same value
    /// cannot succeed; it is reported on the Kubernetes object instead.
    public var permanent: Bool
    public var message: String
    public init(permanent: Bool, _ message: String) {
        self.permanent = permanent
        self.message = message
    }
    public var description: String { message }
}

/// Where the controller writes gateway objects: the Admin API of a gateway, or the store
/// (etcd) that gateways watch.
public protocol GatewayWriter: Sendable {
    /// Every object of `kind` carrying the managed-by label, by id.
    func listManaged(_ kind: ResourceKind) async throws -> [String: JSONValue]
    func put(_ key: ObjectKey, _ value: JSONValue) async throws
    /// Applies a JSON merge patch to an existing object; false when the object does not
    /// exist (the caller then puts the whole value).
    func patch(_ key: ObjectKey, _ patch: JSONValue) async throws -> Bool
    var supportsPatch: Bool { get }
    func delete(_ key: ObjectKey) async throws
    /// Request body bytes sent so far.
    var bytesWritten: Int { get }
}

extension JSONValue {
    var isManaged: Bool { self["labels"]?[IngressNaming.managedByKey]?.stringValue == IngressNaming.managedByValue }

    /// The object without the fields the gateway adds (`create_time`, `update_time`, `id`),
    /// so a listed object compares equal to the value that was written.
    var withoutGatewayFields: JSONValue {
        guard case .object(var o) = self else { return self }
        o["create_time"] = nil
        o["update_time"] = nil
        o["id"] = nil
        return .object(o)
    }
}

/// Writes through the APISIX-compatible Admin API, over a few keep-alive connections.
public final class AdminAPIWriter: GatewayWriter {
    let host: String
    let port: Int
    let key: String?
    let group: EventLoopGroup
    private let pool: ConnectionPool
    private let counter = ByteCounter()

    /// `url`: `http://host:port` (the Admin API's base, `/apisix/admin` is appended).
    public init(url: String, key: String?, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        guard url.hasPrefix("http://") else { throw GatewayWriteError(permanent: true, "--admin-url: must start with http://, got \"\(url)\"") }
        var rest = url.dropFirst("http://".count)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let (h, p) = UpstreamNode.splitAddress(String(rest)) else { throw GatewayWriteError(permanent: true, "--admin-url: bad host:port in \"\(url)\"") }
        host = h.hasPrefix("[") ? String(h.dropFirst().dropLast()) : h
        port = p ?? 80
        self.key = key
        self.group = group
        pool = ConnectionPool()
    }

    public var bytesWritten: Int { counter.value }
    public var supportsPatch: Bool { true }

    private func request(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil) async throws -> HTTP1Response {
        let bytes = body?.serializedBytes()
        if let bytes { counter.add(bytes.count) }
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        if let key { headers.append(("X-API-KEY", key)) }
        let connection: HTTP1Connection
        if let c = pool.take() {
            connection = c
        } else {
            do {
                connection = try await HTTP1Connection.connect(host: host, port: port, group: group, timeout: .seconds(3))
            } catch {
                throw GatewayWriteError(permanent: false, "cannot reach the Admin API at \(host):\(port): \(error)")
            }
        }
        do {
            let response = try await connection.request(method, "/apisix/admin/\(path)", headers: headers, body: bytes, timeout: .seconds(30))
            if response.headers["connection"].first?.lowercased() == "close" { await connection.close() } else { pool.give(connection) }
            return response
        } catch {
            await connection.close()
            throw GatewayWriteError(permanent: false, "\(method.rawValue) \(path): \(error)")
        }
    }

    private static func message(_ r: HTTP1Response) -> String {
        let body = (try? JSONValue.parse(r.body)) ?? .null
        return body["error_msg"]?.stringValue ?? body["message"]?.stringValue ?? String(decoding: r.body.prefix(300), as: UTF8.self)
    }

    private func check(_ r: HTTP1Response, _ what: String, allow404: Bool = false) throws {
        if (200..<300).contains(r.status) || (allow404 && r.status == 404) { return }
        // 4xx but 401 (a key rotated under us), 404, 408 and 429 are the gateway saying no.
        let permanent = (400..<500).contains(r.status) && ![401, 404, 408, 429].contains(r.status)
        throw GatewayWriteError(permanent: permanent, "\(what): \(r.status) \(Self.message(r))")
    }

    public func listManaged(_ kind: ResourceKind) async throws -> [String: JSONValue] {
        let r = try await request(.GET, kind.rawValue)
        try check(r, "GET \(kind.rawValue)")
        guard let body = try? JSONValue.parse(r.body) else { throw GatewayWriteError(permanent: false, "GET \(kind.rawValue): the answer is not JSON") }
        var out: [String: JSONValue] = [:]
        for item in body["list"]?.arrayValue ?? [] {
            guard let value = item["value"], value.isManaged, let id = value["id"]?.stringValue else { continue }
            out[id] = value.withoutGatewayFields
        }
        return out
    }

    public func put(_ key: ObjectKey, _ value: JSONValue) async throws {
        try check(try await request(.PUT, "\(key.kind.rawValue)/\(key.id)", body: value), "PUT \(key)")
    }

    public func patch(_ key: ObjectKey, _ patch: JSONValue) async throws -> Bool {
        let r = try await request(.PATCH, "\(key.kind.rawValue)/\(key.id)", body: patch)
        if r.status == 404 { return false }
        try check(r, "PATCH \(key)")
        return true
    }

    public func delete(_ key: ObjectKey) async throws {
        try check(try await request(.DELETE, "\(key.kind.rawValue)/\(key.id)"), "DELETE \(key)", allow404: true)
    }

    /// Idle keep-alive connections to the Admin API.
    final class ConnectionPool: Sendable {
        private let idle = NIOLockedValueBox<[HTTP1Connection]>([])
        func take() -> HTTP1Connection? {
            idle.withLockedValue { list in
                while let c = list.popLast() { if c.isActive { return c } }
                return nil
            }
        }
        func give(_ c: HTTP1Connection) { idle.withLockedValue { if $0.count < 16 { $0.append(c) } } }
    }
}

/// Writes straight into the store gateways watch (`--etcd`). The store does not validate,
/// so every object is checked here with the gateway's own decoders first, and, given a
/// `trialCompile` (the gateway's `GatewayServer.trialCompile`), compiled on its own as the
/// Admin API does before it stores: an object every gateway would skip is never written.
public final class StoreWriter: GatewayWriter {
    /// Compiles one decoded object alone (`scratch` holds only it); throws what a gateway
    /// could not take.
    public typealias TrialCompiler = @Sendable (ResourceKind, String, ConfigState) throws(ConfigError) -> Void

    let store: ConfigStore
    let trialCompile: TrialCompiler?
    private let counter = ByteCounter()

    public init(store: ConfigStore, trialCompile: TrialCompiler? = nil) {
        self.store = store
        self.trialCompile = trialCompile
    }

    public var bytesWritten: Int { counter.value }
    public var supportsPatch: Bool { false }

    public func listManaged(_ kind: ResourceKind) async throws -> [String: JSONValue] {
        let entries: [StoreEntry]
        do { entries = try await store.load().entries } catch { throw GatewayWriteError(permanent: false, "store: \(error)") }
        var out: [String: JSONValue] = [:]
        for e in entries where e.kind == kind && e.value.isManaged { out[e.id] = e.value.withoutGatewayFields }
        return out
    }

    public func put(_ key: ObjectKey, _ value: JSONValue) async throws {
        try Self.validate(key, value, trialCompile: trialCompile)
        let bytes = value.serializedBytes().count
        counter.add(bytes)
        do {
            _ = try await store.put(kind: key.kind, id: key.id, value: value, expectedModifiedIndex: nil)
        } catch let e as StoreError where e.code == .unsupported || e.message.contains("too large") {
            // The store refused this value itself (e.g. etcd's request size limit): sending
            // it again cannot help, and must not hold up every other object.
            throw GatewayWriteError(permanent: true, "store put \(key): \(e)")
        } catch {
            throw GatewayWriteError(permanent: false, "store put \(key): \(error)")
        }
    }

    public func patch(_ key: ObjectKey, _ patch: JSONValue) async throws -> Bool { false }

    public func delete(_ key: ObjectKey) async throws {
        do { _ = try await store.delete(kind: key.kind, id: key.id) } catch { throw GatewayWriteError(permanent: false, "store delete \(key): \(error)") }
    }

    static func validate(_ key: ObjectKey, _ value: JSONValue, trialCompile: TrialCompiler? = nil) throws {
        // The same decoding (and compiling) the Admin API does before it stores an object.
        var scratch = ConfigState()
        do {
            try scratch.set(key.kind, id: key.id, value: value)
            try trialCompile?(key.kind, key.id, scratch)
        } catch {
            throw GatewayWriteError(permanent: true, "\(key): \(error)")
        }
    }
}
