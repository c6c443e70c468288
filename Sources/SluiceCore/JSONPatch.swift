/// RFC 6902 JSON Patch: `add`, `remove`, `replace`, `move`, `copy` and `test` operations on
/// JSON Pointer (RFC 6901) paths, applied in order, all or nothing.
public struct JSONPatchError: Error, Sendable, CustomStringConvertible, Equatable {
    /// `[2].path` style location of the bad operation.
    public var field: String
    public var message: String
    public var description: String { "\(field): \(message)" }
}

extension JSONValue {
    public func applyingJSONPatch(_ patch: JSONValue) throws(JSONPatchError) -> JSONValue {
        guard case .array(let ops) = patch else { throw JSONPatchError(field: "patch", message: "must be a list of operations") }
        var doc = self
        for (i, op) in ops.enumerated() {
            func field(_ name: String) -> String { "[\(i)].\(name)" }
            guard case .object(let o) = op else { throw JSONPatchError(field: "[\(i)]", message: "must be an object") }
            guard let kind = o["op"]?.stringValue else { throw JSONPatchError(field: field("op"), message: "is required") }
            guard let pathText = o["path"]?.stringValue else { throw JSONPatchError(field: field("path"), message: "is required") }
            let path = try Self.pointer(pathText, field("path"))
            func value() throws(JSONPatchError) -> JSONValue {
                guard let v = o["value"] else { throw JSONPatchError(field: field("value"), message: "is required for \(kind)") }
                return v
            }
            func from() throws(JSONPatchError) -> [String] {
                guard let f = o["from"]?.stringValue else { throw JSONPatchError(field: field("from"), message: "is required for \(kind)") }
                return try Self.pointer(f, field("from"))
            }
            switch kind {
            case "add": doc = try doc.patched(path, .add(try value()), field("path"))
            case "remove": doc = try doc.patched(path, .remove, field("path"))
            case "replace": doc = try doc.patched(path, .replace(try value()), field("path"))
            case "move":
                let source = try from()
                let moved = try doc.pointee(source, field("from"))
                doc = try doc.patched(source, .remove, field("from")).patched(path, .add(moved), field("path"))
            case "copy":
                doc = try doc.patched(path, .add(try doc.pointee(try from(), field("from"))), field("path"))
            case "test":
                guard try doc.pointee(path, field("path")) == (try value()) else {
                    throw JSONPatchError(field: field("path"), message: "test failed: the value differs")
                }
            default:
                throw JSONPatchError(field: field("op"), message: "must be add, remove, replace, move, copy or test, got \"\(kind)\"")
            }
        }
        return doc
    }

    static func pointer(_ text: String, _ field: String) throws(JSONPatchError) -> [String] {
        if text.isEmpty { return [] }
        guard text.hasPrefix("/") else { throw JSONPatchError(field: field, message: "must be a JSON pointer starting with /") }
        return text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            String($0).replacing("~1", with: "/").replacing("~0", with: "~")
        }
    }

    private enum PatchStep {
        case add(JSONValue)
        case remove
        case replace(JSONValue)
    }

    private func pointee(_ path: [String], _ field: String) throws(JSONPatchError) -> JSONValue {
        var current = self
        for token in path {
            switch current {
            case .object(let o):
                guard let next = o[token] else { throw JSONPatchError(field: field, message: "\"\(token)\" does not exist") }
                current = next
            case .array(let a):
                guard let i = Int(token), a.indices.contains(i) else { throw JSONPatchError(field: field, message: "index \(token) is out of range") }
                current = a[i]
            default:
                throw JSONPatchError(field: field, message: "\"\(token)\" is inside a \(current.typeName)")
            }
        }
        return current
    }

    private func patched(_ path: [String], _ step: PatchStep, _ field: String) throws(JSONPatchError) -> JSONValue {
        guard let token = path.first else {
            switch step {
            case .add(let v), .replace(let v): return v
            case .remove: throw JSONPatchError(field: field, message: "cannot remove the whole document")
            }
        }
        let rest = Array(path.dropFirst())
        switch self {
        case .object(var o):
            if rest.isEmpty {
                switch step {
                case .add(let v): o[token] = v
                case .replace(let v):
                    guard o[token] != nil else { throw JSONPatchError(field: field, message: "\"\(token)\" does not exist") }
                    o[token] = v
                case .remove:
                    guard o.removeValue(forKey: token) != nil else { throw JSONPatchError(field: field, message: "\"\(token)\" does not exist") }
                }
            } else {
                guard let child = o[token] else { throw JSONPatchError(field: field, message: "\"\(token)\" does not exist") }
                o[token] = try child.patched(rest, step, field)
            }
            return .object(o)
        case .array(var a):
            if rest.isEmpty, case .add(let v) = step {
                if token == "-" { a.append(v); return .array(a) }
                guard let i = Int(token), i >= 0, i <= a.count else { throw JSONPatchError(field: field, message: "index \(token) is out of range") }
                a.insert(v, at: i)
                return .array(a)
            }
            guard let i = Int(token), a.indices.contains(i) else { throw JSONPatchError(field: field, message: "index \(token) is out of range") }
            if rest.isEmpty {
                switch step {
                case .replace(let v): a[i] = v
                case .remove: a.remove(at: i)
                case .add: break
                }
            } else {
                a[i] = try a[i].patched(rest, step, field)
            }
            return .array(a)
        default:
            throw JSONPatchError(field: field, message: "\"\(token)\" is inside a \(typeName)")
        }
    }
}
