import SluiceCore
import SluiceStore

/// The APISIX Admin API v3 over a `ConfigService`.
public struct AdminAPI: APIHandler {
    public enum Role: Sendable { case admin, viewer }

    public let service: ConfigService
    public let keys: [String: Role]
    public let allowed: [CIDR]

    public init(service: ConfigService, keys: [String: Role], allowed: [CIDR]) {
        self.service = service
        self.keys = keys
        self.allowed = allowed
    }

    public static let prefix = "/apisix/admin"

    public func handle(_ request: APIRequest) async -> APIResponse {
        var response = await route(request)
        response.headers.append(("X-API-VERSION", "v3"))
        return response
    }

    private func route(_ request: APIRequest) async -> APIResponse {
        if !allowed.isEmpty {
            guard let ip = request.remoteAddress, allowed.contains(where: { $0.contains(ip) }) else {
                return .error(403, "ip not allowed")
            }
        }
        let key = request.headers["x-api-key"] ?? request.query["api_key"]
        guard let key, let role = keys[key] else { return .error(401, "failed to check token") }
        guard request.path.hasPrefix(Self.prefix) else { return .error(404, "not found") }
        let parts = request.path.dropFirst(Self.prefix.count).split(separator: "/").map(String.init)
        guard let first = parts.first else { return .error(404, "not found") }
        let isRead = request.method == "GET" || request.method == "HEAD"
        if !isRead && role == .viewer && !(first == "schema" && parts.count > 1 && parts[1] == "validate") {
            return .error(401, "failed to check token: the viewer role may only read")
        }

        switch first {
        case "plugins":
            guard parts.count == 2, isRead else { return .error(404, "not found") }
            if let sub = request.query["subsystem"], sub != "http" { return .error(400, "unsupported subsystem: \(sub)") }
            if parts[1] == "list" {
                // By descending priority, as APISIX lists them.
                return APIResponse(status: 200, body: .array(PluginCatalog.namesByPriority.map { .string($0) }))
            }
            return Self.pluginSchema(parts[1], consumer: request.query["schema_type"] == "consumer")
        case "schema":
            return schema(request, Array(parts.dropFirst()))
        default:
            guard let kind = ResourceKind(rawValue: first) else { return .error(404, "not found") }
            return await resource(request, kind, Array(parts.dropFirst()))
        }
    }

    private func resource(_ request: APIRequest, _ kind: ResourceKind, _ rest: [String]) async -> APIResponse {
        let id = rest.first
        do throws(AdminError) {
            var ttl: Int? = nil
            if let text = request.query["ttl"] {
                guard let t = Int(text), (1...Int(Int32.max)).contains(t) else { throw AdminError(400, "ttl: must be a positive integer (seconds)") }
                ttl = t
            }
            switch (request.method, id) {
            case ("GET", nil):
                return await list(request, kind)
            case ("GET", let id?) where rest.count == 1:
                guard let entry = await service.read(kind, id) else { return APIResponse(status: 404, body: ["message": "Key not found"]) }
                return APIResponse(status: 200, body: Self.envelope(entry, indices: true, read: true))
            case ("PUT", let id?) where rest.count == 1:
                let (entry, created) = try await service.put(kind, id: id, body: try Self.clientBody(request), ttl: ttl)
                return APIResponse(status: created ? 201 : 200, body: Self.envelope(entry, indices: false))
            case ("PUT", nil) where kind == .consumers:
                let body = try Self.clientBody(request)
                guard body["username"] != nil else { throw AdminError(400, "invalid configuration: username: is required") }
                let (entry, created) = try await service.put(kind, id: nil, body: body)
                return APIResponse(status: created ? 201 : 200, body: Self.envelope(entry, indices: false))
            case ("PUT", nil):
                // As APISIX: the id may come in the body instead of the path.
                let body = try Self.clientBody(request)
                let id: String?
                do throws(ConfigError) {
                    id = try ObjectID.read(body["id"], path: "id")
                } catch {
                    throw AdminError(400, "invalid configuration: \(error)")
                }
                guard let id else { throw AdminError(400, "missing \(kind.singular) id") }
                let (entry, created) = try await service.put(kind, id: id, body: body, ttl: ttl)
                return APIResponse(status: created ? 201 : 200, body: Self.envelope(entry, indices: false))
            case ("POST", nil):
                guard kind != .consumers else { return .error(405, "not supported `POST` method for consumer") }
                let body = try Self.clientBody(request)
                // POST makes the id; one in the body is refused, as APISIX does.
                if body["id"] != nil { throw AdminError(400, "wrong \(kind.singular) id, do not need it") }
                let (entry, _) = try await service.put(kind, id: nil, body: body, ttl: ttl)
                return APIResponse(status: 201, body: Self.envelope(entry, indices: false))
            case ("POST", _?) where rest.count == 1:
                // As APISIX: POST makes the id, so one in the path is refused.
                guard kind != .consumers else { return .error(405, "not supported `POST` method for consumer") }
                throw AdminError(400, "wrong \(kind.singular) id, do not need it")
            case ("PATCH", let id?):
                let entry = try await service.patch(kind, id: id, subpath: Array(rest.dropFirst()), body: try Self.clientBody(request))
                return APIResponse(status: 200, body: Self.envelope(entry, indices: false))
            case ("DELETE", let id?) where rest.count == 1:
                try await service.delete(kind, id: id, force: request.query["force"] == "true")
                return APIResponse(status: 200, body: ["deleted": "1", "key": .string("/apisix/\(kind.rawValue)/\(id)")])
            default:
                return .error(405, "method \(request.method) is not allowed on \(request.path)")
            }
        } catch {
            if error.status == 404 { return APIResponse(status: 404, body: ["message": .string(error.message)]) }
            return .error(error.status, error.message)
        }
    }

    /// A body as a client sends it: the gateway's own timestamps may not be written (APISIX:
    /// "the property is forbidden").
    static func clientBody(_ request: APIRequest) throws(AdminError) -> JSONValue {
        let body = try parseBody(request)
        for key in ["create_time", "update_time"] where body[key] != nil {
            throw AdminError(400, "the property is forbidden: \(key)")
        }
        return body
    }

    private func list(_ request: APIRequest, _ kind: ResourceKind) async -> APIResponse {
        var entries = await service.readAll(kind)
        let total = entries.count
        if request.query["page"] != nil || request.query["page_size"] != nil {
            guard let page = Int(request.query["page"] ?? "1"), page >= 1 else { return .error(400, "page: must be an integer >= 1") }
            guard let size = Int(request.query["page_size"] ?? "10"), (10...500).contains(size) else {
                return .error(400, "page_size: must be an integer from 10 to 500")
            }
            // A page past the end is empty; (page - 1) * size is computed only for pages that
            // can hold an entry, so no page number overflows.
            let start = page - 1 > entries.count / size ? entries.count : min((page - 1) * size, entries.count)
            entries = Array(entries[start..<min(start + size, entries.count)])
        }
        return APIResponse(status: 200, body: ["total": .int(Int64(total)), "list": .array(entries.map { Self.envelope($0, indices: true, read: true) })])
    }

    private func schema(_ request: APIRequest, _ rest: [String]) -> APIResponse {
        if rest.count == 2, rest[0] == "validate", request.method == "POST" {
            guard let kind = ResourceKind(rawValue: rest[1]) ?? ResourceKind(singular: rest[1]) else {
                return .error(404, "unknown resource \(rest[1])")
            }
            do throws(AdminError) {
                let body = try Self.parseBody(request)
                var scratch = ConfigState()
                do throws(ConfigError) {
                    try scratch.set(kind, id: "validate", value: body)
                } catch {
                    return .error(400, "invalid configuration: \(error)")
                }
                return APIResponse(status: 200, body: ["valid": true])
            } catch {
                return .error(error.status, error.message)
            }
        }
        guard request.method == "GET" else { return .error(405, "method \(request.method) is not allowed") }
        if rest.count == 2, rest[0] == "plugins" {
            return Self.pluginSchema(rest[1], consumer: request.query["schema_type"] == "consumer")
        }
        guard rest.count == 1, let kind = ResourceKind(rawValue: rest[0]) ?? ResourceKind(singular: rest[0]), let s = Schemas.schema(for: kind) else {
            return .error(404, "unknown resource")
        }
        return APIResponse(status: 200, body: s)
    }

    /// A plugin's JSON Schema (`_meta` included), or its consumer schema.
    static func pluginSchema(_ name: String, consumer: Bool) -> APIResponse {
        guard let spec = PluginCatalog.all[name] else { return .error(404, "plugin not found") }
        guard let doc = PluginCatalog.schemaDocument(spec, consumer: consumer) else { return .error(400, "not found schema") }
        return APIResponse(status: 200, body: doc)
    }

    static func parseBody(_ request: APIRequest) throws(AdminError) -> JSONValue {
        guard !request.body.isEmpty else { throw AdminError(400, "invalid configuration: the body is empty") }
        do {
            return try JSONValue.parse(request.body)
        } catch {
            throw AdminError(400, "invalid request body: \(error)")
        }
    }

    /// `{"key", "value"}` for an answer. `read`: the object is read back (GET, a listing):
    /// private keys of `ssls` objects are left out, as APISIX leaves them out.
    static func envelope(_ entry: StoreEntry, indices: Bool, read: Bool = false) -> JSONValue {
        var value = entry.value
        if read, entry.kind == .ssls, case .object(var o) = value {
            o["key"] = nil
            o["keys"] = nil
            value = .object(o)
        }
        var o: [String: JSONValue] = ["key": .string(entry.key), "value": value]
        if indices {
            o["createdIndex"] = .int(entry.createdIndex)
            o["modifiedIndex"] = .int(entry.modifiedIndex)
        }
        return .object(o)
    }
}
