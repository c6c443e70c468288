/// A configuration problem, located by its field path (`upstream.nodes[2].port`).
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Several configuration problems at once, for `sluice validate` and file loads.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(_ errors: [ConfigError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// Joins field paths: `FieldPath.join("upstream", "nodes")` is `upstream.nodes`.
public enum FieldPath {
    public static func join(_ base: String, _ key: String) -> String {
        base.isEmpty ? key : "\(base).\(key)"
    }

    public static func index(_ base: String, _ i: Int) -> String { "\(base)[\(i)]" }
}
