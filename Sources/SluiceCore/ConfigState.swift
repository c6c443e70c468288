/// The resource kinds of the Admin API and the declarative file, by their APISIX names.
public enum ResourceKind: String, Sendable, CaseIterable, Hashable {
    case routes, services, upstreams, consumers, ssls
    case globalRules = "global_rules"
    case pluginConfigs = "plugin_configs"
    case streamRoutes = "stream_routes"

    /// `route`, `upstream`, ...: as APISIX names one object of the kind.
    public var singular: String {
        switch self {
        case .routes: return "route"
        case .services: return "service"
        case .upstreams: return "upstream"
        case .consumers: return "consumer"
        case .ssls: return "ssl"
        case .globalRules: return "global_rule"
        case .pluginConfigs: return "plugin_config"
        case .streamRoutes: return "stream_route"
        }
    }

    public init?(singular: String) {
        guard let kind = ResourceKind.allCases.first(where: { $0.singular == singular }) else { return nil }
        self = kind
    }

    /// Kinds this build can serve. Objects of the other kinds are refused with a clear error
    /// instead of being stored and silently not acted upon.
    public var isSupported: Bool {
        switch self {
        case .routes, .services, .upstreams, .consumers, .pluginConfigs, .globalRules, .ssls: return true
        case .streamRoutes: return false
        }
    }
}

/// What changed since the last compile, when the caller knows: lets the compiler touch only
/// the routes concerned instead of rebuilding the table.
public struct ConfigChange: Sendable, Hashable {
    public var kind: ResourceKind
    public var id: String
    public init(_ kind: ResourceKind, _ id: String) {
        self.kind = kind
        self.id = id
    }
}

/// Every configured object, typed and validated: what the compiler turns into a snapshot.
public struct ConfigState: Sendable {
    public var routes: [String: Route] = [:]
    public var services: [String: Service] = [:]
    public var upstreams: [String: Upstream] = [:]
    public var consumers: [String: Consumer] = [:]
    public var pluginConfigs: [String: PluginSet] = [:]
    public var globalRules: [String: PluginSet] = [:]
    public var ssls: [String: SSLObject] = [:]

    public init(routes: [String: Route] = [:], services: [String: Service] = [:], upstreams: [String: Upstream] = [:]) {
        self.routes = routes
        self.services = services
        self.upstreams = upstreams
    }

    /// Decodes one stored object and puts it in place (or removes it for a nil value).
    public mutating func set(_ kind: ResourceKind, id: String, value: JSONValue?, path: String = "") throws(ConfigError) {
        switch kind {
        case .routes: routes[id] = try value.map { v throws(ConfigError) in try Route.decode(v, id: id, path: path) }
        case .services: services[id] = try value.map { v throws(ConfigError) in try Service.decode(v, id: id, path: path) }
        case .upstreams: upstreams[id] = try value.map { v throws(ConfigError) in try Upstream.decode(v, id: id, path: path) }
        case .consumers: consumers[id] = try value.map { v throws(ConfigError) in try Consumer.decode(v, id: id, path: path) }
        case .pluginConfigs: pluginConfigs[id] = try value.map { v throws(ConfigError) in try PluginSet.decode(v, id: id, path: path) }
        case .globalRules: globalRules[id] = try value.map { v throws(ConfigError) in try PluginSet.decode(v, id: id, path: path) }
        case .ssls: ssls[id] = try value.map { v throws(ConfigError) in try SSLObject.decode(v, id: id, path: path) }
        case .streamRoutes:
            if value != nil { throw ConfigError(path: path, "\(kind.rawValue) are not supported by this build yet") }
        }
    }

    /// Takes `kind`/`id` as already decoded in `other` (nil there: removes it here), so an
    /// object validated on its own is not decoded a second time to be stored.
    public mutating func adopt(_ kind: ResourceKind, id: String, from other: ConfigState) {
        switch kind {
        case .routes: routes[id] = other.routes[id]
        case .services: services[id] = other.services[id]
        case .upstreams: upstreams[id] = other.upstreams[id]
        case .consumers: consumers[id] = other.consumers[id]
        case .pluginConfigs: pluginConfigs[id] = other.pluginConfigs[id]
        case .globalRules: globalRules[id] = other.globalRules[id]
        case .ssls: ssls[id] = other.ssls[id]
        case .streamRoutes: break
        }
    }

    /// Objects that refer to `kind`/`id` (for refusing a delete), as "route [1]" strings.
    public func referrers(of kind: ResourceKind, id: String) -> [String] {
        var result: [String] = []
        switch kind {
        case .upstreams:
            for (rid, r) in routes where r.upstreamID == id { result.append("route [\(rid)]") }
            for (sid, s) in services where s.upstreamID == id { result.append("service [\(sid)]") }
            // traffic-split's weighted_upstreams, worded as APISIX: "plugin in route [1]".
            func splits(_ plugins: [String: JSONValue]) -> Bool { Self.trafficSplitUpstreamIDs(plugins).contains(id) }
            for (rid, r) in routes where splits(r.plugins) { result.append("plugin in route [\(rid)]") }
            for (sid, s) in services where splits(s.plugins) { result.append("plugin in service [\(sid)]") }
            for (gid, g) in globalRules where splits(g.plugins) { result.append("plugin in global_rules [\(gid)]") }
            for (pid, p) in pluginConfigs where splits(p.plugins) { result.append("plugin in plugin_config [\(pid)]") }
            for (cid, c) in consumers where splits(c.plugins) { result.append("plugin in consumer [\(cid)]") }
        case .services:
            for (rid, r) in routes where r.serviceID == id { result.append("route [\(rid)]") }
        case .pluginConfigs:
            for (rid, r) in routes where r.pluginConfigID == id { result.append("route [\(rid)]") }
        case .ssls:
            for (uid, u) in upstreams where u.tls?.clientCertID == id { result.append("upstream [\(uid)]") }
            for (rid, r) in routes where r.upstream?.tls?.clientCertID == id { result.append("route [\(rid)]") }
            for (sid, s) in services where s.upstream?.tls?.clientCertID == id { result.append("service [\(sid)]") }
        default:
            break
        }
        return result.sorted()
    }

    /// The `upstream_id`s a traffic-split config names in `rules[].weighted_upstreams[]`.
    static func trafficSplitUpstreamIDs(_ plugins: [String: JSONValue]) -> [String] {
        guard let rules = plugins["traffic-split"]?["rules"]?.arrayValue else { return [] }
        var ids: [String] = []
        for rule in rules {
            for w in rule["weighted_upstreams"]?.arrayValue ?? [] {
                if let u = w["upstream_id"] { ids.append(u.stringValue ?? u.intValue.map { String($0) } ?? "") }
            }
        }
        return ids
    }

    /// The objects `kind`/`id` refers to, as (field, kind, id).
    public func references(of kind: ResourceKind, id: String) -> [(field: String, kind: ResourceKind, id: String)] {
        var refs: [(field: String, kind: ResourceKind, id: String)] = []
        switch kind {
        case .routes:
            guard let r = routes[id] else { return [] }
            if let u = r.upstreamID { refs.append(("upstream_id", .upstreams, u)) }
            if let s = r.serviceID { refs.append(("service_id", .services, s)) }
            if let p = r.pluginConfigID { refs.append(("plugin_config_id", .pluginConfigs, p)) }
            if let c = r.upstream?.tls?.clientCertID { refs.append(("upstream.tls.client_cert_id", .ssls, c)) }
        case .services:
            if let u = services[id]?.upstreamID { refs.append(("upstream_id", .upstreams, u)) }
            if let c = services[id]?.upstream?.tls?.clientCertID { refs.append(("upstream.tls.client_cert_id", .ssls, c)) }
        case .upstreams:
            if let c = upstreams[id]?.tls?.clientCertID { refs.append(("tls.client_cert_id", .ssls, c)) }
        default:
            break
        }
        return refs
    }

    public func contains(_ kind: ResourceKind, _ id: String) -> Bool {
        switch kind {
        case .routes: return routes[id] != nil
        case .services: return services[id] != nil
        case .upstreams: return upstreams[id] != nil
        case .consumers: return consumers[id] != nil
        case .pluginConfigs: return pluginConfigs[id] != nil
        case .globalRules: return globalRules[id] != nil
        case .ssls: return ssls[id] != nil
        case .streamRoutes: return false
        }
    }

    /// References that point at nothing: `upstream_id`, `service_id`, `plugin_config_id`.
    public func referenceErrors() -> [ConfigError] {
        var errors: [ConfigError] = []
        for (kind, ids) in [(ResourceKind.routes, routes.keys.sorted()), (.services, services.keys.sorted()), (.upstreams, upstreams.keys.sorted())] {
            for id in ids {
                for ref in references(of: kind, id: id) where !contains(ref.kind, ref.id) {
                    errors.append(ConfigError(path: "\(kind.rawValue)[\(id)].\(ref.field)", "\(ref.kind.singular) \"\(ref.id)\" not found"))
                }
            }
        }
        return errors
    }
}

/// The declarative file (`--standalone FILE`, `sluice validate FILE`), already read into a
/// JSON value (YAML is converted by the caller).
public enum DeclarativeConfig {
    /// The objects of a document as (kind, id, value), for serving them read-only through the
    /// Admin API. Call after `decode` succeeded.
    public static func objects(_ document: JSONValue) -> [(kind: ResourceKind, id: String, value: JSONValue)] {
        guard case .object(let top) = document else { return [] }
        var result: [(kind: ResourceKind, id: String, value: JSONValue)] = []
        for (key, value) in top {
            guard let kind = ResourceKind(rawValue: key), case .array(let items) = value else { continue }
            for item in items {
                let idValue = kind == .consumers ? (item["id"] ?? item["username"]) : item["id"]
                if let id = (try? ObjectID.read(idValue, path: "")) ?? nil { result.append((kind, id, item)) }
            }
        }
        return result
    }

    /// Decodes the whole document and returns every error found, each with its path.
    public static func decode(_ document: JSONValue) -> Result<ConfigState, ConfigErrors> {
        var errors: [ConfigError] = []
        var state = ConfigState()
        var ids: [ResourceKind: Set<String>] = [:]
        var indices: [String: String] = [:]  // "routes[ID]" → "routes[INDEX]"
        let top: [String: JSONValue]
        switch document {
        case .object(let o): top = o
        case .null: top = [:]
        default: return .failure(ConfigErrors([ConfigError(path: "", "the file must hold a mapping of resource lists")]))
        }
        for key in top.keys.sorted() {
            guard let kind = ResourceKind(rawValue: key) else {
                errors.append(ConfigError(path: key, "unknown resource kind (expected one of \(ResourceKind.allCases.map(\.rawValue).joined(separator: ", ")))"))
                continue
            }
            let value = top[key]!
            if case .null = value { continue }
            guard case .array(let items) = value else {
                errors.append(ConfigError(path: key, "must be a list, got \(value.typeName)"))
                continue
            }
            if !kind.isSupported && !items.isEmpty {
                errors.append(ConfigError(path: key, "\(key) are not supported by this build yet"))
                continue
            }
            for (i, item) in items.enumerated() {
                let path = "\(key)[\(i)]"
                do throws(ConfigError) {
                    let idValue = kind == .consumers ? (item["id"] ?? item["username"]) : item["id"]
                    guard let id = try ObjectID.read(idValue, path: "\(path).id") else {
                        throw ConfigError(path: "\(path).id", "is required")
                    }
                    if ids[kind, default: []].contains(id) {
                        throw ConfigError(path: "\(path).id", "duplicate id \"\(id)\"")
                    }
                    ids[kind, default: []].insert(id)
                    indices["\(kind.rawValue)[\(id)]"] = path
                    try state.set(kind, id: id, value: item, path: path)
                } catch {
                    errors.append(error)
                }
            }
        }
        // Reference errors name objects by id; in a file, name them by position instead.
        for var e in state.referenceErrors() {
            if let bracket = e.path.firstIndex(of: "]"), let byIndex = indices[String(e.path[...bracket])] {
                e.path = byIndex + e.path[e.path.index(after: bracket)...]
            }
            errors.append(e)
        }
        return errors.isEmpty ? .success(state) : .failure(ConfigErrors(errors))
    }
}

extension ConfigState {
    /// What APISIX refuses in a write although the object is valid on its own: a consumer
    /// credential another consumer already holds (the key would authenticate as either), and
    /// a plugin another global rule already runs (it would run twice). `scratch` holds the
    /// written object alone. Returns APISIX's message, or nil.
    public func conflict(of kind: ResourceKind, id: String, in scratch: ConfigState) -> String? {
        switch kind {
        case .consumers:
            guard let c = scratch.consumers[id] else { return nil }
            for (plugin, field) in Self.credentialFields {
                guard let value = c.plugins[plugin]?[field]?.stringValue else { continue }
                for other in consumers.keys.sorted() where other != id {
                    if consumers[other]?.plugins[plugin]?[field]?.stringValue == value {
                        return "duplicate \(field) of plugin \(plugin) found with consumer: \(other)"
                    }
                }
            }
        case .globalRules:
            guard let rule = scratch.globalRules[id] else { return nil }
            for name in rule.plugins.keys.sorted() {
                for other in globalRules.keys.sorted() where other != id && globalRules[other]?.plugins[name] != nil {
                    return "plugin '\(name)' already exists in global rule with id '\(other)'"
                }
            }
        default:
            break
        }
        return nil
    }

    /// The consumer plugin fields that identify a consumer: two consumers may not share one.
    static let credentialFields: [(plugin: String, field: String)] = [("key-auth", "key"), ("basic-auth", "username"), ("jwt-auth", "key")]
}
