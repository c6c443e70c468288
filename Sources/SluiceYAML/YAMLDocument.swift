import SluiceCore
import Yams

/// YAML (of which JSON is a subset) read into a `JSONValue`, with errors naming the path.
public enum YAMLDocument {
    public static func parse(_ text: String) throws(ConfigErrors) -> JSONValue {
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigErrors([ConfigError(path: "", "not valid YAML: \(error)")])
        }
        guard let node else { return .null }
        return try convert(node, path: "")
    }

    static func convert(_ node: Node, path: String) throws(ConfigErrors) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: return .null
            case .bool: return .bool(node.bool ?? false)
            case .int:
                if let i = Int64(scalar.string) { return .int(i) }
                if let i = node.int { return .int(Int64(i)) }
                return .string(scalar.string)
            case .float:
                if let d = node.float, d.isFinite { return .double(d) }
                return .string(scalar.string)
            default: return .string(scalar.string)
            }
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            for (k, v) in mapping {
                guard case .scalar(let keyScalar) = k else {
                    throw ConfigErrors([ConfigError(path: path, "mapping keys must be plain strings")])
                }
                let key = keyScalar.string
                let childPath = FieldPath.join(path, key)
                if object[key] != nil { throw ConfigErrors([ConfigError(path: childPath, "duplicate key")]) }
                object[key] = try convert(v, path: childPath)
            }
            return .object(object)
        case .sequence(let sequence):
            var array: [JSONValue] = []
            for (i, v) in sequence.enumerated() { array.append(try convert(v, path: FieldPath.index(path, i))) }
            return .array(array)
        case .alias:
            throw ConfigErrors([ConfigError(path: path, "YAML aliases are not supported")])
        }
    }
}
