import SluiceCore
import SluiceProxy
import SluiceTLS
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
    public static func load(_ text: String, keyring: Keyring? = nil) -> Result<ConfigState, ConfigErrors> {
        loadWithObjects(text, keyring: keyring).map(\.state)
    }

    /// Like `load`, also returning the objects as written, for the read-only Admin API.
    public static func loadWithObjects(
        _ text: String, keyring: Keyring? = nil
    ) -> Result<(state: ConfigState, objects: [(kind: ResourceKind, id: String, value: JSONValue)]), ConfigErrors> {
        do throws(ConfigErrors) {
            let document = try parse(text)
            let state = try DeclarativeConfig.decode(document).get()
            try checkCertificates(state, document, keyring: keyring)
            return .success((state, DeclarativeConfig.objects(document)))
        } catch {
            return .failure(error)
        }
    }

    /// Certificates parse and keys match them, as an Admin API write checks: errors name
    /// the object by its position in the file (`ssls[1].key`).
    static func checkCertificates(_ state: ConfigState, _ document: JSONValue, keyring: Keyring?) throws(ConfigErrors) {
        guard !state.ssls.isEmpty, case .array(let items)? = document["ssls"] else { return }
        var errors: [ConfigError] = []
        for (i, item) in items.enumerated() {
            guard let id = (try? ObjectID.read(item["id"], path: "")) ?? nil, let object = state.ssls[id] else { continue }
            var scratch = ConfigState()
            scratch.ssls[id] = object
            do throws(ConfigError) {
                try SnapshotCompiler.trialCompile(.ssls, id: id, scratch: scratch, keyring: keyring)
            } catch {
                errors.append(ConfigError(path: FieldPath.join("ssls[\(i)]", error.path), error.message))
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors) }
    }
}
