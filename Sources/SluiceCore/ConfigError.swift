/// A configuration problem, located by its field path (`upstream.nodes[2].port`).
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, _ message: String) {
        self.path = Self.printable(path)
        self.message = Self.printable(message)
    }

    /// Messages quote what was written; control characters in it are shown escaped
    /// (`\r`, `\u{0}`), so that an error printed to a log or a terminal is one line and
    /// cannot forge another. A message is cut after 4,096 characters.
    static func printable(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) || text.utf8.count > 4096 else { return text }
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            count += 1
            if count > 4096 { out += "…"; break }
            switch scalar {
            case "\r": out += "\\r"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
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
