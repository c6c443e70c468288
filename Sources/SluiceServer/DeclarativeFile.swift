import SluiceCore
import SluiceYAML

/// Reads the declarative config file (YAML, of which JSON is a subset) into a `JSONValue`.
public enum DeclarativeFile {
    public static func parse(_ text: String) throws(ConfigErrors) -> JSONValue {
        try YAMLDocument.parse(text)
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
