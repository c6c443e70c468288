import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceHTTPClient

/// A collection in the API: `GROUP/VERSION PLURAL`, optionally in one namespace.
public struct KubeResource: Sendable, Hashable {
    public var group: String
    public var version: String
    public var plural: String
    public var namespace: String?

    public init(group: String, version: String, plural: String, namespace: String? = nil) {
        self.group = group
        self.version = version
        self.plural = plural
        self.namespace = namespace
    }

    public static func endpointSlices(namespace: String? = nil) -> KubeResource { .init(group: "discovery.k8s.io", version: "v1", plural: "endpointslices", namespace: namespace) }
    public static func services(namespace: String? = nil) -> KubeResource { .init(group: "", version: "v1", plural: "services", namespace: namespace) }

    public func path(name: String? = nil) -> String {
        var p = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if let namespace { p += "/namespaces/\(namespace)" }
        p += "/\(plural)"
        if let name { p += "/\(name)" }
        return p
    }
}

/// A failure the API server reported (its `Status`), or one reaching it (code 0).
public struct KubeAPIError: Error, Sendable, CustomStringConvertible {
    public var code: Int
    public var reason: String
    public var message: String
    public var description: String { "\(code) \(reason): \(message)" }

    public var isGone: Bool { code == 410 }
    public var isConflict: Bool { code == 409 }
}

public enum KubeWatchEvent: Sendable {
    case added(JSONValue)
    case modified(JSONValue)
    case deleted(JSONValue)
    case bookmark(resourceVersion: String)
    case error(KubeAPIError)
}

/// The Kubernetes API over HTTP/1.1 with keep-alive: list (paged), get, create, update,
/// merge patch, delete, watch. Bearer tokens from a file are read again on every request,
/// so a rotated service-account token is picked up.
public actor KubeAPI {
    public let connection: KubeConnection
    private let group: EventLoopGroup
    private var http: HTTP1Connection?

    public init(_ connection: KubeConnection, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.connection = connection
        self.group = group
    }

    nonisolated func authHeaders() -> [(String, String)] {
        var h: [(String, String)] = [("Accept", "application/json")]
        switch connection.auth {
        case .bearer(let t): h.append(("Authorization", "Bearer \(t)"))
        case .bearerFile(let path):
            if let t = KubeConfigLoader.readFile(path) { h.append(("Authorization", "Bearer \(String(decoding: t, as: UTF8.self).trimmingWhitespace())")) }
        case .basic(let u, let p): h.append(("Authorization", "Basic \(Base64.encode("\(u):\(p)"))"))
        case .none, .clientCertificate: break
        }
        return h
    }

    nonisolated func checkTransport() throws(KubeAPIError) {
        guard connection.scheme == "http" else {
            throw KubeAPIError(code: 0, reason: "Unsupported", message: "https API servers need TLS, which this build does not have yet (\(connection.server))")
        }
    }

    private func send(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil, contentType: String = "application/json") async throws -> JSONValue {
        try checkTransport()
        var headers = authHeaders()
        if body != nil { headers.append(("Content-Type", contentType)) }
        let response: HTTP1Response
        do {
            let conn: HTTP1Connection
            if let c = http, c.isActive {
                conn = c
            } else {
                conn = try await HTTP1Connection.connect(host: connection.host, port: connection.port, group: group)
                http = conn
            }
            response = try await conn.request(method, connection.basePath + path, headers: headers, body: body?.serializedBytes())
        } catch {
            http = nil
            throw KubeAPIError(code: 0, reason: "Unavailable", message: "\(connection.server): \(error)")
        }
        let json = (try? JSONValue.parse(response.body)) ?? .null
        guard (200..<300).contains(response.status) else {
            throw KubeAPIError(code: response.status, reason: json["reason"]?.stringValue ?? "", message: json["message"]?.stringValue ?? "status \(response.status)")
        }
        return json
    }

    static func query(_ items: [(String, String?)]) -> String {
        let parts = items.compactMap { k, v in v.map { "\(k)=\(PercentEncoding.encode($0))" } }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    /// One page: items, the list's resourceVersion, and the continue token when more remain.
    public func list(_ r: KubeResource, labelSelector: String? = nil, limit: Int? = nil, continue token: String? = nil) async throws
        -> (items: [JSONValue], resourceVersion: String, continue: String?)
    {
        let json = try await send(.GET, r.path() + Self.query([("labelSelector", labelSelector), ("limit", limit.map(String.init)), ("continue", token)]))
        let c = json["metadata"]?["continue"]?.stringValue
        return (json["items"]?.arrayValue ?? [], json["metadata"]?["resourceVersion"]?.stringValue ?? "", c?.isEmpty == false ? c : nil)
    }

    public func get(_ r: KubeResource, name: String) async throws -> JSONValue { try await send(.GET, r.path(name: name)) }
    public func create(_ r: KubeResource, _ object: JSONValue) async throws -> JSONValue { try await send(.POST, r.path(), body: object) }
    public func update(_ r: KubeResource, name: String, _ object: JSONValue) async throws -> JSONValue { try await send(.PUT, r.path(name: name), body: object) }
    public func mergePatch(_ r: KubeResource, name: String, _ patch: JSONValue) async throws -> JSONValue {
        try await send(.PATCH, r.path(name: name), body: patch, contentType: "application/merge-patch+json")
    }
    @discardableResult
    public func delete(_ r: KubeResource, name: String) async throws -> JSONValue { try await send(.DELETE, r.path(name: name)) }

    /// Read, change, write, with optimistic concurrency: on 409 the object is read again and
    /// the change applied to the new version, up to `attempts` times.
    public func modify(_ r: KubeResource, name: String, attempts: Int = 5, _ change: @Sendable (JSONValue) -> JSONValue) async throws -> JSONValue {
        var last: Error = KubeAPIError(code: 409, reason: "Conflict", message: "no attempt made")
        for _ in 0..<max(1, attempts) {
            let current = try await get(r, name: name)
            do {
                return try await update(r, name: name, change(current))
            } catch let e as KubeAPIError where e.isConflict {
                last = e
            }
        }
        throw last
    }

    /// A watch from `resourceVersion`, on a connection of its own. Ends when the server ends
    /// it; a 410 arrives as `.error` with `isGone`.
    public nonisolated func watch(
        _ r: KubeResource, resourceVersion: String, labelSelector: String? = nil, bookmarks: Bool = true, timeoutSeconds: Int? = nil
    ) -> AsyncThrowingStream<KubeWatchEvent, Error> {
        let path = connection.basePath + r.path() + Self.query([
            ("watch", "1"), ("resourceVersion", resourceVersion), ("labelSelector", labelSelector),
            ("allowWatchBookmarks", bookmarks ? "true" : nil), ("timeoutSeconds", timeoutSeconds.map(String.init)),
        ])
        let lines = HTTP1Connection.stream(host: connection.host, port: connection.port, group: group, path: path, headers: authHeaders())
        let transportError: KubeAPIError? = { () -> KubeAPIError? in
            do throws(KubeAPIError) { try checkTransport(); return nil } catch { return error }
        }()
        return AsyncThrowingStream { continuation in
            let task = Task {
                if let transportError {
                    continuation.finish(throwing: transportError)
                    return
                }
                do {
                    for try await part in lines {
                        switch part {
                        case .status(let code) where code != 200:
                            continuation.finish(throwing: KubeAPIError(code: code, reason: "", message: "watch refused with \(code)"))
                            return
                        case .status:
                            continue
                        case .line(let bytes):
                            guard let e = try? JSONValue.parse(bytes), let type = e["type"]?.stringValue, let object = e["object"] else { continue }
                            switch type {
                            case "ADDED": continuation.yield(.added(object))
                            case "MODIFIED": continuation.yield(.modified(object))
                            case "DELETED": continuation.yield(.deleted(object))
                            case "BOOKMARK": continuation.yield(.bookmark(resourceVersion: object["metadata"]?["resourceVersion"]?.stringValue ?? ""))
                            case "ERROR":
                                continuation.yield(.error(KubeAPIError(
                                    code: Int(object["code"]?.intValue ?? 0), reason: object["reason"]?.stringValue ?? "",
                                    message: object["message"]?.stringValue ?? "")))
                            default: continue
                            }
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: KubeAPIError(code: 0, reason: "Unavailable", message: "watch: \(error)"))
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

enum PercentEncoding {
    static func encode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(b)))
            default:
                let hex = Array("0123456789ABCDEF")
                out += "%\(hex[Int(b >> 4)])\(hex[Int(b & 0xF)])"
            }
        }
        return out
    }
}
