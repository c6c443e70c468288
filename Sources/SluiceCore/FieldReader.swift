/// Reads the fields of one JSON object, checking types and ranges, and remembering which keys
/// were read so that unknown keys can be reported by name.
public struct FieldReader {
    public let path: String
    public let object: [String: JSONValue]
    private var used: Set<String> = []

    public init(_ value: JSONValue, path: String) throws(ConfigError) {
        guard case .object(let o) = value else {
            throw ConfigError(path: path, "must be an object, got \(value.typeName)")
        }
        self.path = path
        self.object = o
    }

    public func path(_ key: String) -> String { FieldPath.join(path, key) }

    /// Marks `keys` as known without reading them.
    public mutating func accept(_ keys: String...) {
        for k in keys { used.insert(k) }
    }

    public mutating func raw(_ key: String) -> JSONValue? {
        used.insert(key)
        guard let v = object[key] else { return nil }
        if case .null = v { return nil }
        return v
    }

    public mutating func has(_ key: String) -> Bool {
        raw(key) != nil
    }

    public mutating func string(
        _ key: String, minLength: Int = 0, maxLength: Int = Int.max, allowed: Set<String>? = nil
    ) throws(ConfigError) -> String? {
        guard let v = raw(key) else { return nil }
        guard case .string(let s) = v else { throw ConfigError(path: path(key), "must be a string, got \(v.typeName)") }
        let count = s.count
        if count < minLength {
            throw ConfigError(path: path(key), minLength == 1 ? "must not be empty" : "must be at least \(minLength) characters")
        }
        if count > maxLength { throw ConfigError(path: path(key), "must be at most \(maxLength) characters") }
        if let allowed, !allowed.contains(s) {
            throw ConfigError(path: path(key), "must be one of \(allowed.sorted().joined(separator: ", ")), got \"\(s)\"")
        }
        return s
    }

    public mutating func int(_ key: String, range: ClosedRange<Int64>? = nil) throws(ConfigError) -> Int? {
        guard let v = raw(key) else { return nil }
        guard let i = v.intValue else { throw ConfigError(path: path(key), "must be an integer, got \(v.typeName)") }
        if let range, !range.contains(i) {
            throw ConfigError(path: path(key), Self.rangeMessage(range))
        }
        return Int(i)
    }

    static func rangeMessage(_ range: ClosedRange<Int64>) -> String {
        if range.upperBound == Int64.max { return "must be >= \(range.lowerBound)" }
        return "must be \(range.lowerBound)-\(range.upperBound)"
    }

    public mutating func number(_ key: String, min: Double? = nil, exclusiveMin: Bool = false, max: Double? = nil)
        throws(ConfigError) -> Double?
    {
        guard let v = raw(key) else { return nil }
        guard let d = v.doubleValue else { throw ConfigError(path: path(key), "must be a number, got \(v.typeName)") }
        if let min {
            if exclusiveMin ? d <= min : d < min {
                throw ConfigError(path: path(key), exclusiveMin ? "must be greater than \(Self.format(min))" : "must be >= \(Self.format(min))")
            }
        }
        if let max, d > max { throw ConfigError(path: path(key), "must be <= \(Self.format(max))") }
        return d
    }

    /// A number as text: integral values within ±2^53 without a fraction (`5`, not `5.0`),
    /// anything else as Swift prints doubles (`1e+19`). Never traps, whatever the value.
    public static func format(_ d: Double) -> String {
        d.isFinite && d.rounded() == d && abs(d) <= 9_007_199_254_740_992 ? String(Int64(d)) : String(d)
    }

    public mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = raw(key) else { return nil }
        guard case .bool(let b) = v else { throw ConfigError(path: path(key), "must be a boolean, got \(v.typeName)") }
        return b
    }

    public mutating func array(_ key: String, minItems: Int = 0, maxItems: Int = Int.max) throws(ConfigError) -> [JSONValue]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let a) = v else { throw ConfigError(path: path(key), "must be an array, got \(v.typeName)") }
        if a.count < minItems {
            throw ConfigError(path: path(key), minItems == 1 ? "must not be empty" : "must have at least \(minItems) items")
        }
        if a.count > maxItems { throw ConfigError(path: path(key), "must have at most \(maxItems) items") }
        return a
    }

    public mutating func stringArray(_ key: String, minItems: Int = 0, unique: Bool = true) throws(ConfigError) -> [String]? {
        guard let a = try array(key, minItems: minItems) else { return nil }
        var result: [String] = []
        result.reserveCapacity(a.count)
        for (i, item) in a.enumerated() {
            guard case .string(let s) = item else {
                throw ConfigError(path: FieldPath.index(path(key), i), "must be a string, got \(item.typeName)")
            }
            if unique && result.contains(s) {
                throw ConfigError(path: FieldPath.index(path(key), i), "duplicate value \"\(s)\"")
            }
            result.append(s)
        }
        return result
    }

    public mutating func object(_ key: String) throws(ConfigError) -> [String: JSONValue]? {
        guard let v = raw(key) else { return nil }
        guard case .object(let o) = v else { throw ConfigError(path: path(key), "must be an object, got \(v.typeName)") }
        return o
    }

    public mutating func labels(_ key: String = "labels") throws(ConfigError) -> [String: String] {
        guard let o = try object(key) else { return [:] }
        var result: [String: String] = [:]
        for (k, v) in o {
            guard case .string(let s) = v else {
                throw ConfigError(path: FieldPath.join(path(key), k), "must be a string, got \(v.typeName)")
            }
            guard !k.isEmpty, k.utf8.count <= 256, !s.isEmpty, s.utf8.count <= 256 else {
                throw ConfigError(path: FieldPath.join(path(key), k), "label keys and values must be 1-256 characters")
            }
            // APISIX's label values match `^\S+$`.
            guard !s.unicodeScalars.contains(where: { $0.properties.isWhitespace }) else {
                throw ConfigError(path: FieldPath.join(path(key), k), "failed to match pattern \"^\\S+$\" with \"\(s)\": label values have no whitespace")
            }
            result[k] = s
        }
        return result
    }

    /// Throws for the first key in the object that no reader asked for.
    public func rejectUnknown() throws(ConfigError) {
        for key in object.keys.sorted() where !used.contains(key) {
            throw ConfigError(path: path(key), "unknown field")
        }
    }
}

/// Object ids: `^[a-zA-Z0-9-_.]{1,64}$`, as the Admin API accepts them.
public enum ObjectID {
    public static func isValid(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard (1...64).contains(utf8.count) else { return false }
        for c in utf8 {
            switch c {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
                continue
            default: return false
            }
        }
        return true
    }

    /// Reads an id that may be a string or an integer (APISIX accepts both).
    public static func read(_ value: JSONValue?, path: String) throws(ConfigError) -> String? {
        guard let value else { return nil }
        let id: String
        switch value {
        case .null: return nil
        case .string(let s): id = s
        case .int(let i): id = String(i)
        default: throw ConfigError(path: path, "must be a string or an integer, got \(value.typeName)")
        }
        guard isValid(id) else { throw ConfigError(path: path, "must match ^[a-zA-Z0-9-_.]{1,64}$, got \"\(id)\"") }
        return id
    }
}
