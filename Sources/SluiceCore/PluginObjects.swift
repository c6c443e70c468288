/// A consumer: a client identity that authentication plugins map requests to.
public struct Consumer: Sendable {
    public var username: String
    public var plugins: [String: JSONValue] = [:]
    public var desc: String?
    public var labels: [String: String] = [:]

    public static func decode(_ value: JSONValue, id: String? = nil, path: String = "") throws(ConfigError) -> Consumer {
        var r = try FieldReader(value, path: path)
        r.accept("id", "create_time", "update_time")
        guard let username = try r.string("username", minLength: 1, maxLength: 256) ?? id else {
            throw ConfigError(path: r.path("username"), "is required")
        }
        for c in username.utf8 {
            let ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95 || c == 45
            if !ok { throw ConfigError(path: r.path("username"), "must match ^[a-zA-Z0-9_-]+$, got \"\(username)\"") }
        }
        if let id, id != username {
            throw ConfigError(path: r.path("username"), "must equal the id in the path (\"\(id)\")")
        }
        var c = Consumer(username: username)
        if let plugins = try r.object("plugins") { c.plugins = try PluginConfigs.validate(plugins, path: r.path("plugins"), consumer: true) }
        c.desc = try r.string("desc", maxLength: 256)
        c.labels = try r.labels()
        // Authentication sends `custom_id` to the upstream as X-Consumer-Custom-Id: no label
        // of a consumer may hold what a header value cannot.
        for k in c.labels.keys.sorted() where !HeaderSyntax.isSafeValue(c.labels[k] ?? "") {
            throw ConfigError(path: FieldPath.join(r.path("labels"), k), "must not contain control characters (CR, LF, NUL...)")
        }
        try r.rejectUnknown()
        return c
    }
}

/// A named set of plugin configs that routes share (`plugin_config_id`), or one that runs
/// for every request (a global rule).
public struct PluginSet: Sendable {
    public var id: String?
    public var plugins: [String: JSONValue] = [:]
    public var name: String?
    public var desc: String?
    public var labels: [String: String] = [:]

    public static func decode(_ value: JSONValue, id: String? = nil, path: String = "") throws(ConfigError) -> PluginSet {
        var r = try FieldReader(value, path: path)
        r.accept("create_time", "update_time")
        var s = PluginSet()
        s.id = try ObjectID.read(r.raw("id"), path: r.path("id")) ?? id
        guard let plugins = try r.object("plugins") else { throw ConfigError(path: r.path("plugins"), "is required") }
        s.plugins = try PluginConfigs.validate(plugins, path: r.path("plugins"))
        s.name = try r.string("name", minLength: 1, maxLength: 256)
        s.desc = try r.string("desc", maxLength: 256)
        s.labels = try r.labels()
        try r.rejectUnknown()
        return s
    }
}
