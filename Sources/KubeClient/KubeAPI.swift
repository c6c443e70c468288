import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
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
    /// `initialEventsEnd` marks the end of the initial state in a WatchList stream
    /// (annotation `k8s.io/initial-events-end: "true"`).
    case bookmark(resourceVersion: String, initialEventsEnd: Bool)
    case error(KubeAPIError)
}

/// Which objects a list or watch selects: label and field selectors in the API's syntax
/// (`app=web,tier!=db`, `metadata.name=httpbin`).
public struct KubeSelector: Sendable, Hashable {
    public var labels: String?
    public var fields: String?
    public init(labels: String? = nil, fields: String? = nil) {
        self.labels = labels
        self.fields = fields
    }
    public static let everything = KubeSelector()
    var queryItems: [(String, String?)] { [("labelSelector", labels), ("fieldSelector", fields)] }
}

/// The Kubernetes API over HTTP/1.1 (TLS for https servers) with keep-alive: list (paged),
/// get, create, update, status update, merge and JSON patch, delete, watch. Bearer tokens
/// from a file are read again on every request, so a rotated service-account token is
/// picked up.
public actor KubeAPI {
    public let connection: KubeConnection
    private let group: EventLoopGroup
    private var http: HTTP1Connection?
    /// The TLS context for https servers, built once (or why it could not be).
    private nonisolated let tls: Result<NIOSSLContext?, KubeAPIError>
    /// Bytes read from the API server by this client, on every connection (after TLS).
    public nonisolated let bytesReceived = ByteCounter()

    public init(_ connection: KubeConnection, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.connection = connection
        self.group = group
        self.tls = Self.makeTLS(connection)
    }

    static func makeTLS(_ c: KubeConnection) -> Result<NIOSSLContext?, KubeAPIError> {
        switch c.scheme {
        case "http": return .success(nil)
        case "https":
            var cert: [UInt8]? = nil, key: [UInt8]? = nil
            if case .clientCertificate(let certificatePEM, let keyPEM) = c.auth {
                cert = certificatePEM
                key = keyPEM
            }
            do {
                return .success(try HTTP1TLS.context(
                    certificateAuthorityPEM: c.certificateAuthorityPEM, certificatePEM: cert, keyPEM: key, insecureSkipVerify: c.insecureSkipTLSVerify))
            } catch {
                return .failure(KubeAPIError(code: 0, reason: "InvalidTLSConfig", message: "\(c.server): the certificate authority, client certificate or key cannot be used: \(error)"))
            }
        default:
            return .failure(KubeAPIError(code: 0, reason: "InvalidServer", message: "\(c.server): the scheme must be http or https"))
        }
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

    private func send(_ method: HTTPMethod, _ path: String, body: JSONValue? = nil, contentType: String = "application/json") async throws -> JSONValue {
        let tls = try self.tls.get()
        var headers = authHeaders()
        if body != nil { headers.append(("Content-Type", contentType)) }
        let response: HTTP1Response
        do {
            let conn: HTTP1Connection
            var extra = false
            if let c = http, c.isActive {
                conn = c
            } else {
                conn = try await HTTP1Connection.connect(host: connection.host, port: connection.port, group: group, tls: tls, counter: bytesReceived)
                // Requests that found no connection at once (informers starting together)
                // each opened one: the first is kept, the others serve one request and close.
                if let c = http, c.isActive { extra = true } else { http = conn }
            }
            defer { if extra { Task { await conn.close() } } }
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
    public func list(_ r: KubeResource, selector: KubeSelector = .everything, limit: Int? = nil, continue token: String? = nil) async throws
        -> (items: [JSONValue], resourceVersion: String, continue: String?)
    {
        let json = try await send(.GET, r.path() + Self.query(selector.queryItems + [("limit", limit.map(String.init)), ("continue", token)]))
        let c = json["metadata"]?["continue"]?.stringValue
        return (json["items"]?.arrayValue ?? [], json["metadata"]?["resourceVersion"]?.stringValue ?? "", c?.isEmpty == false ? c : nil)
    }

    public func get(_ r: KubeResource, name: String) async throws -> JSONValue { try await send(.GET, r.path(name: name)) }
    public func create(_ r: KubeResource, _ object: JSONValue) async throws -> JSONValue { try await send(.POST, r.path(), body: object) }
    public func update(_ r: KubeResource, name: String, _ object: JSONValue) async throws -> JSONValue { try await send(.PUT, r.path(name: name), body: object) }
    public func mergePatch(_ r: KubeResource, name: String, _ patch: JSONValue) async throws -> JSONValue {
        try await send(.PATCH, r.path(name: name), body: patch, contentType: "application/merge-patch+json")
    }
    /// RFC 6902 JSON patch: a list of operations (`add`, `remove`, `replace`, `test`, ...).
    public func jsonPatch(_ r: KubeResource, name: String, _ operations: [JSONValue]) async throws -> JSONValue {
        try await send(.PATCH, r.path(name: name), body: .array(operations), contentType: "application/json-patch+json")
    }
    /// Writes the `status` subresource: only `status` changes, and `metadata.resourceVersion`
    /// in `object` (when present) must be current.
    public func updateStatus(_ r: KubeResource, name: String, _ object: JSONValue) async throws -> JSONValue {
        try await send(.PUT, r.path(name: name) + "/status", body: object)
    }
    public func mergePatchStatus(_ r: KubeResource, name: String, _ patch: JSONValue) async throws -> JSONValue {
        try await send(.PATCH, r.path(name: name) + "/status", body: patch, contentType: "application/merge-patch+json")
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
    /// it; a 410 arrives as `.error` with `isGone`. With `sendInitialEvents` (WatchList) the
    /// server first sends the current state as ADDED events, then a bookmark marked
    /// `initialEventsEnd`.
    public nonisolated func watch(
        _ r: KubeResource, resourceVersion: String, selector: KubeSelector = .everything, bookmarks: Bool = true, timeoutSeconds: Int? = nil,
        sendInitialEvents: Bool = false
    ) -> AsyncThrowingStream<KubeWatchEvent, Error> {
        let path = connection.basePath + r.path() + Self.query([("watch", "1"), ("resourceVersion", resourceVersion)] + selector.queryItems + [
            ("allowWatchBookmarks", bookmarks || sendInitialEvents ? "true" : nil), ("timeoutSeconds", timeoutSeconds.map(String.init)),
            ("sendInitialEvents", sendInitialEvents ? "true" : nil), ("resourceVersionMatch", sendInitialEvents ? "NotOlderThan" : nil),
        ])
        let tlsResult = tls
        let tls = (try? tlsResult.get()) ?? nil
        let lines = HTTP1Connection.stream(
            host: connection.host, port: connection.port, group: group, tls: tls, counter: bytesReceived, path: path, headers: authHeaders())
        return AsyncThrowingStream { continuation in
            let task = Task {
                if case .failure(let e) = tlsResult {
                    continuation.finish(throwing: e)
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
                            case "BOOKMARK":
                                let meta = object["metadata"]
                                continuation.yield(.bookmark(
                                    resourceVersion: meta?["resourceVersion"]?.stringValue ?? "",
                                    initialEventsEnd: meta?["annotations"]?["k8s.io/initial-events-end"]?.stringValue == "true"))
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
