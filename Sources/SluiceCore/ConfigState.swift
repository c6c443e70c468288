/// The resource kinds of the Admin API and the declarative file, by their APISIX names.
public enum ResourceKind: String, Sendable, CaseIterable, Hashable {
    case routes, services, upstreams, consumers, ssls
    case globalRules = "global_rules"
    case pluginConfigs = "plugin_configs"
    case streamRoutes = "stream_routes"

    /// Kinds this build can serve. Objects of the other kinds are refused with a clear error
    /// instead of being stored and silently not acted upon.
    public var isSupported: Bool {
        switch self {
        case .routes, .services, .upstreams: return true
        default: return false
        }
    }
}

/// Every configured object, typed and validated: what the compiler turns into a snapshot.
public struct ConfigState: Sendable {
    public var routes: [String: Route] = [:]
    public var services: [String: Service] = [:]
    public var upstreams: [String: Upstream] = [:]

    public init(routes: [String: Route] = [:], services: [String: Service] = [:], upstreams: [String: Upstream] = [:]) {
        self.routes = routes
        self.services = services
        self.upstreams = upstreams
    }

    /// References that point at nothing: `upstream_id`, `service_id`, `plugin_config_id`.
    public func referenceErrors() -> [ConfigError] {
        var errors: [ConfigError] = []
        for id in routes.keys.sorted() {
            let route = routes[id]!
            let base = "routes[\(id)]"
            if let u = route.upstreamID, upstreams[u] == nil {
                errors.append(ConfigError(path: "\(base).upstream_id", "upstream \"\(u)\" not found"))
            }
            if let s = route.serviceID, services[s] == nil {
                errors.append(ConfigError(path: "\(base).service_id", "service \"\(s)\" not found"))
            }
            if let p = route.pluginConfigID {
                errors.append(ConfigError(path: "\(base).plugin_config_id", "plugin_config \"\(p)\" not found"))
            }
        }
        for id in services.keys.sorted() {
            if let u = services[id]!.upstreamID, upstreams[u] == nil {
                errors.append(ConfigError(path: "services[\(id)].upstream_id", "upstream \"\(u)\" not found"))
            }
        }
        return errors
    }
}

/// The declarative file (`--standalone FILE`, `sluice validate FILE`), already read into a
/// JSON value (YAML is converted by the caller).
public enum DeclarativeConfig {
    /// Decodes the whole document and returns every error found, each with its path.
    public static func decode(_ document: JSONValue) -> Result<ConfigState, ConfigErrors> {
        var errors: [ConfigError] = []
        var state = ConfigState()
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
                    guard let id = try ObjectID.read(item["id"], path: "\(path).id") else {
                        throw ConfigError(path: "\(path).id", "is required")
                    }
                    switch kind {
                    case .routes:
                        if state.routes[id] != nil { throw ConfigError(path: "\(path).id", "duplicate route id \"\(id)\"") }
                        state.routes[id] = try Route.decode(item, id: id, path: path)
                    case .services:
                        if state.services[id] != nil { throw ConfigError(path: "\(path).id", "duplicate service id \"\(id)\"") }
                        state.services[id] = try Service.decode(item, id: id, path: path)
                    case .upstreams:
                        if state.upstreams[id] != nil { throw ConfigError(path: "\(path).id", "duplicate upstream id \"\(id)\"") }
                        state.upstreams[id] = try Upstream.decode(item, id: id, path: path)
                    default:
                        break
                    }
                } catch {
                    errors.append(error)
                }
            }
        }
        errors += state.referenceErrors()
        return errors.isEmpty ? .success(state) : .failure(ConfigErrors(errors))
    }
}
