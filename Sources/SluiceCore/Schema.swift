import Synchronization

/// A JSON Schema subset, declared once per plugin: it validates a config (errors name the
/// field path), fills in defaults, and prints itself as the JSON Schema that
/// `/apisix/admin/schema/plugins/{name}` serves.
public indirect enum Schema: Sendable {
    case string(StringRules = .init())
    case integer(NumberRules = .init())
    case number(NumberRules = .init())
    case boolean
    case array(Schema, ArrayRules = .init())
    case object(ObjectSchema)
    /// A map of free keys whose values follow `values` (JSON Schema `additionalProperties`).
    case map(Schema, keyPattern: String? = nil, minProperties: Int = 0)
    /// The first alternative the value satisfies (JSON Schema `anyOf`); used for fields
    /// that are, e.g., an integer or a variable name.
    case anyOf([Schema])
    /// Any JSON value.
    case any

    public struct StringRules: Sendable {
        public var minLength = 0
        public var maxLength = Int.max
        public var pattern: String? = nil
        public var enumValues: [String]? = nil
        public init(minLength: Int = 0, maxLength: Int = Int.max, pattern: String? = nil, enum enumValues: [String]? = nil) {
            self.minLength = minLength
            self.maxLength = maxLength
            self.pattern = pattern
            self.enumValues = enumValues
        }
    }

    public struct NumberRules: Sendable {
        public var minimum: Double? = nil
        public var maximum: Double? = nil
        public var exclusiveMinimum: Double? = nil
        public var enumValues: [Int64]? = nil
        public init(minimum: Double? = nil, maximum: Double? = nil, exclusiveMinimum: Double? = nil, enum enumValues: [Int64]? = nil) {
            self.minimum = minimum
            self.maximum = maximum
            self.exclusiveMinimum = exclusiveMinimum
            self.enumValues = enumValues
        }
    }

    public struct ArrayRules: Sendable {
        public var minItems = 0
        public var maxItems = Int.max
        public var uniqueItems = false
        public init(minItems: Int = 0, maxItems: Int = Int.max, unique: Bool = false) {
            self.minItems = minItems
            self.maxItems = maxItems
            self.uniqueItems = unique
        }
    }

    /// Validates `value` and returns it with defaults filled in.
    public func validate(_ value: JSONValue, path: String) throws(ConfigError) -> JSONValue {
        switch self {
        case .any:
            return value
        case .boolean:
            guard case .bool = value else { throw ConfigError(path: path, "must be a boolean, got \(value.typeName)") }
            return value
        case .string(let r):
            guard case .string(let s) = value else { throw ConfigError(path: path, "must be a string, got \(value.typeName)") }
            let n = s.count
            if n < r.minLength { throw ConfigError(path: path, r.minLength == 1 ? "must not be empty" : "must be at least \(r.minLength) characters") }
            if n > r.maxLength { throw ConfigError(path: path, "must be at most \(r.maxLength) characters") }
            if let e = r.enumValues, !e.contains(s) {
                throw ConfigError(path: path, "must be one of \(e.joined(separator: ", ")), got \"\(s)\"")
            }
            if let p = r.pattern {
                guard let re = SchemaPatterns.compiled(p), re.matches(s) else {
                    throw ConfigError(path: path, "must match \(p), got \"\(s)\"")
                }
            }
            return value
        case .integer(let r):
            guard let i = value.intValue else { throw ConfigError(path: path, "must be an integer, got \(value.typeName)") }
            try Self.check(Double(i), r, path)
            if let e = r.enumValues, !e.contains(i) { throw ConfigError(path: path, "must be one of \(e.map(String.init).joined(separator: ", ")), got \(i)") }
            return .int(i)
        case .number(let r):
            guard let d = value.doubleValue else { throw ConfigError(path: path, "must be a number, got \(value.typeName)") }
            try Self.check(d, r, path)
            return value
        case .array(let items, let r):
            guard case .array(let a) = value else { throw ConfigError(path: path, "must be an array, got \(value.typeName)") }
            if a.count < r.minItems { throw ConfigError(path: path, r.minItems == 1 ? "must not be empty" : "must have at least \(r.minItems) items") }
            if a.count > r.maxItems { throw ConfigError(path: path, "must have at most \(r.maxItems) items") }
            var out: [JSONValue] = []
            out.reserveCapacity(a.count)
            for (i, item) in a.enumerated() {
                let v = try items.validate(item, path: FieldPath.index(path, i))
                if r.uniqueItems, out.contains(v) { throw ConfigError(path: FieldPath.index(path, i), "duplicates an earlier item") }
                out.append(v)
            }
            return .array(out)
        case .map(let values, let keyPattern, let minProperties):
            guard case .object(let o) = value else { throw ConfigError(path: path, "must be an object, got \(value.typeName)") }
            if o.count < minProperties { throw ConfigError(path: path, "must have at least \(minProperties) entries") }
            var out: [String: JSONValue] = [:]
            for k in o.keys.sorted() {
                if let keyPattern, let re = SchemaPatterns.compiled(keyPattern), !re.matches(k) {
                    throw ConfigError(path: FieldPath.join(path, k), "the name must match \(keyPattern)")
                }
                out[k] = try values.validate(o[k]!, path: FieldPath.join(path, k))
            }
            return .object(out)
        case .object(let s):
            return try s.validate(value, path: path)
        case .anyOf(let options):
            var first: ConfigError? = nil
            for o in options {
                do throws(ConfigError) {
                    return try o.validate(value, path: path)
                } catch {
                    if first == nil { first = error }
                }
            }
            throw first ?? ConfigError(path: path, "matches no allowed form")
        }
    }

    static func check(_ d: Double, _ r: NumberRules, _ path: String) throws(ConfigError) {
        func text(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int64(x)) : String(x) }
        // NaN compares false with every bound: refuse it (and infinities) before comparing.
        guard d.isFinite else { throw ConfigError(path: path, "must be a finite number") }
        if let m = r.minimum, d < m { throw ConfigError(path: path, "must be >= \(text(m))") }
        if let m = r.exclusiveMinimum, d <= m { throw ConfigError(path: path, "must be > \(text(m))") }
        if let m = r.maximum, d > m { throw ConfigError(path: path, "must be <= \(text(m))") }
    }

    /// The JSON Schema document of this schema.
    public var json: JSONValue {
        func num(_ d: Double) -> JSONValue { d == d.rounded() && abs(d) < 1e15 ? .int(Int64(d)) : .double(d) }
        switch self {
        case .any: return [:]
        case .boolean: return ["type": "boolean"]
        case .string(let r):
            var o: [String: JSONValue] = ["type": "string"]
            if r.minLength > 0 { o["minLength"] = .int(Int64(r.minLength)) }
            if r.maxLength != Int.max { o["maxLength"] = .int(Int64(r.maxLength)) }
            if let p = r.pattern { o["pattern"] = .string(p) }
            if let e = r.enumValues { o["enum"] = .array(e.map { .string($0) }) }
            return .object(o)
        case .integer(let r), .number(let r):
            var o: [String: JSONValue] = ["type": { if case .integer = self { return "integer" } else { return "number" } }()]
            if let m = r.minimum { o["minimum"] = num(m) }
            if let m = r.maximum { o["maximum"] = num(m) }
            if let m = r.exclusiveMinimum { o["exclusiveMinimum"] = num(m) }
            if let e = r.enumValues { o["enum"] = .array(e.map { .int($0) }) }
            return .object(o)
        case .array(let items, let r):
            var o: [String: JSONValue] = ["type": "array", "items": items.json]
            if r.minItems > 0 { o["minItems"] = .int(Int64(r.minItems)) }
            if r.maxItems != Int.max { o["maxItems"] = .int(Int64(r.maxItems)) }
            if r.uniqueItems { o["uniqueItems"] = true }
            return .object(o)
        case .map(let values, let keyPattern, let minProperties):
            var o: [String: JSONValue] = ["type": "object"]
            if let keyPattern { o["patternProperties"] = .object([keyPattern: values.json]) } else { o["additionalProperties"] = values.json }
            if minProperties > 0 { o["minProperties"] = .int(Int64(minProperties)) }
            return .object(o)
        case .object(let s): return s.json
        case .anyOf(let options): return ["anyOf": .array(options.map(\.json))]
        }
    }
}

/// The schemas' own patterns, compiled once each (a validation would otherwise compile its
/// patterns on every write). The set is the schemas' and does not grow with input.
enum SchemaPatterns {
    private static let cache = Mutex<[String: LinearRegex]>([:])

    static func compiled(_ pattern: String) -> LinearRegex? {
        if let re = cache.withLock({ $0[pattern] }) { return re }
        guard let re = try? LinearRegex(pattern) else { return nil }
        cache.withLock { $0[pattern] = re }
        return re
    }
}

/// An object with named properties, defaults, required fields and groups of which exactly
/// one (`oneOfRequired`) or at least one (`anyOfRequired`) must be present, plus an optional
/// check of its own for rules a schema cannot say (a regex that must compile, fields that
/// exclude each other).
public struct ObjectSchema: Sendable {
    public struct Property: Sendable {
        public var name: String
        public var schema: Schema
        public var defaultValue: JSONValue?
        public var description: String?
    }

    public var properties: [Property]
    public var required: [String]
    public var oneOfRequired: [[String]]
    public var anyOfRequired: [[String]]
    public var minProperties: Int
    public var additionalProperties: Bool
    public var check: (@Sendable (JSONValue, String) throws(ConfigError) -> Void)?

    public init(
        _ properties: [Property], required: [String] = [], oneOfRequired: [[String]] = [], anyOfRequired: [[String]] = [], minProperties: Int = 0,
        additionalProperties: Bool = false, check: (@Sendable (JSONValue, String) throws(ConfigError) -> Void)? = nil
    ) {
        self.properties = properties
        self.required = required
        self.oneOfRequired = oneOfRequired
        self.anyOfRequired = anyOfRequired
        self.minProperties = minProperties
        self.additionalProperties = additionalProperties
        self.check = check
    }

    func validate(_ value: JSONValue, path: String) throws(ConfigError) -> JSONValue {
        guard case .object(let o) = value else { throw ConfigError(path: path, "must be an object, got \(value.typeName)") }
        if o.count < minProperties { throw ConfigError(path: path, "must set at least \(minProperties) field\(minProperties == 1 ? "" : "s")") }
        var out: [String: JSONValue] = [:]
        var known = Set<String>()
        for p in properties {
            known.insert(p.name)
            if let v = o[p.name], v != .null {
                out[p.name] = try p.schema.validate(v, path: FieldPath.join(path, p.name))
            } else if let d = p.defaultValue {
                out[p.name] = d
            }
        }
        for r in required where o[r] == nil || o[r] == .null { throw ConfigError(path: FieldPath.join(path, r), "is required") }
        for group in oneOfRequired {
            let present = group.filter { o[$0] != nil && o[$0] != .null }
            if present.count != 1 {
                throw ConfigError(
                    path: path, present.isEmpty ? "needs one of \(group.joined(separator: ", "))" : "takes only one of \(present.joined(separator: ", "))")
            }
        }
        for group in anyOfRequired where !group.contains(where: { o[$0] != nil && o[$0] != .null }) {
            throw ConfigError(path: path, "needs at least one of \(group.joined(separator: ", "))")
        }
        for k in o.keys.sorted() where !known.contains(k) {
            if additionalProperties { out[k] = o[k] } else { throw ConfigError(path: FieldPath.join(path, k), "unknown field") }
        }
        let result = JSONValue.object(out)
        try check?(result, path)
        return result
    }

    var json: JSONValue {
        var props: [String: JSONValue] = [:]
        for p in properties {
            var s = p.schema.json
            if case .object(var o) = s {
                if let d = p.defaultValue { o["default"] = d }
                if let desc = p.description { o["description"] = .string(desc) }
                s = .object(o)
            }
            props[p.name] = s
        }
        var o: [String: JSONValue] = ["type": "object", "properties": .object(props)]
        if !required.isEmpty { o["required"] = .array(required.map { .string($0) }) }
        var groups: [JSONValue] = []
        for g in oneOfRequired { groups.append(["oneOf": .array(g.map { ["required": [.string($0)]] })]) }
        for g in anyOfRequired { groups.append(["anyOf": .array(g.map { ["required": [.string($0)]] })]) }
        if groups.count == 1, case .object(let g) = groups[0] { for (k, v) in g { o[k] = v } } else if !groups.isEmpty { o["allOf"] = .array(groups) }
        if minProperties > 0 { o["minProperties"] = .int(Int64(minProperties)) }
        if !additionalProperties { o["additionalProperties"] = false }
        return .object(o)
    }
}

extension ObjectSchema.Property {
    public static func field(_ name: String, _ schema: Schema, default d: JSONValue? = nil, _ description: String? = nil) -> Self {
        .init(name: name, schema: schema, defaultValue: d, description: description)
    }
}

extension Schema {
    /// Shorthands for plugin schemas.
    public static func object(
        _ properties: [ObjectSchema.Property], required: [String] = [], oneOfRequired: [[String]] = [], anyOfRequired: [[String]] = [],
        minProperties: Int = 0, additionalProperties: Bool = false, check: (@Sendable (JSONValue, String) throws(ConfigError) -> Void)? = nil
    ) -> Schema {
        .object(ObjectSchema(
            properties, required: required, oneOfRequired: oneOfRequired, anyOfRequired: anyOfRequired, minProperties: minProperties,
            additionalProperties: additionalProperties, check: check))
    }
    public static let nonEmptyString = Schema.string(.init(minLength: 1))
    public static func stringEnum(_ values: String...) -> Schema { .string(.init(enum: values)) }
    public static func int(min: Double? = nil, max: Double? = nil, exclusiveMin: Double? = nil) -> Schema {
        .integer(.init(minimum: min, maximum: max, exclusiveMinimum: exclusiveMin))
    }
    public static func num(min: Double? = nil, max: Double? = nil, exclusiveMin: Double? = nil) -> Schema {
        .number(.init(minimum: min, maximum: max, exclusiveMinimum: exclusiveMin))
    }
    public static func list(_ items: Schema, minItems: Int = 0, maxItems: Int = Int.max, unique: Bool = false) -> Schema {
        .array(items, .init(minItems: minItems, maxItems: maxItems, unique: unique))
    }
}
