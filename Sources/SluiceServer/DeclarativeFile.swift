import SluiceCore
import SluiceYAML

/// Reads the declarative config file (YAML, of which JSON is a subset) into a `JSONValue`.
public enum DeclarativeFile {
    /// A document whose first non-blank character is `{` is JSON and is read by the JSON
    /// parser (strict, and without YAML's limits such as 1,024-character keys); anything else
    /// is YAML.
    public static func parse(_ text: String) throws(ConfigErrors) -> JSONValue {
        if text.utf8.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) == UInt8(ascii: "{") {
            do throws(JSONParseError) {
                return try JSONValue.parse(text)
            } catch {
                throw ConfigErrors([ConfigError(path: "", "not valid JSON: \(error)")])
            }
        }
        return try YAMLDocument.parse(text)
    }

    /// Parses and validates; every problem is reported with its path.
    public static func load(_ text: String) -> Result<ConfigState, ConfigErrors> {
        loadWithObjects(text).map(\.state)
    }

    /// Like `load`, also returning the objects as written, for the read-only Admin API.
    public static func loadWithObjects(_ text: String) -> Result<(state: ConfigState, objects: [(kind: ResourceKind, id: String, value: JSONValue)]), ConfigErrors> {
        do throws(ConfigErrors) {
            let document = try parse(text)
            return DeclarativeConfig.decode(document).map { ($0, DeclarativeConfig.objects(document)) }
        } catch {
            return .failure(error)
        }
    }
}
