import SluiceCore

/// A Kubernetes label selector in its query-string form:
/// `app=web,tier!=cache,release,!canary,env in (prod,staging),zone notin (a)`.
public struct LabelSelector: Sendable, Hashable {
    public enum Requirement: Sendable, Hashable {
        case equals(String, String)
        case notEquals(String, String)
        case exists(String)
        case notExists(String)
        case `in`(String, Set<String>)
        case notIn(String, Set<String>)
    }

    public var requirements: [Requirement]

    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public static let everything = LabelSelector(requirements: [])

    public init(requirements: [Requirement]) { self.requirements = requirements }

    public init(_ text: String) throws(ParseError) {
        var reqs: [Requirement] = []
        for part in Self.splitTopLevel(text) {
            let p = part.trimmingWhitespace()
            if p.isEmpty { continue }
            if let r = p.firstRange(of: " notin ") {
                reqs.append(.notIn(String(p[..<r.lowerBound]).trimmingWhitespace(), try Self.set(p[r.upperBound...])))
            } else if let r = p.firstRange(of: " in ") {
                reqs.append(.in(String(p[..<r.lowerBound]).trimmingWhitespace(), try Self.set(p[r.upperBound...])))
            } else if let r = p.firstRange(of: "!=") {
                reqs.append(.notEquals(String(p[..<r.lowerBound]).trimmingWhitespace(), String(p[r.upperBound...]).trimmingWhitespace()))
            } else if let r = p.firstRange(of: "==") {
                reqs.append(.equals(String(p[..<r.lowerBound]).trimmingWhitespace(), String(p[r.upperBound...]).trimmingWhitespace()))
            } else if let r = p.firstRange(of: "=") {
                reqs.append(.equals(String(p[..<r.lowerBound]).trimmingWhitespace(), String(p[r.upperBound...]).trimmingWhitespace()))
            } else if p.hasPrefix("!") {
                reqs.append(.notExists(String(p.dropFirst()).trimmingWhitespace()))
            } else {
                reqs.append(.exists(p))
            }
        }
        for r in reqs {
            let key: String
            switch r {
            case .equals(let k, _), .notEquals(let k, _), .exists(let k), .notExists(let k), .in(let k, _), .notIn(let k, _): key = k
            }
            if key.isEmpty || key.contains(" ") { throw ParseError(description: "invalid label selector \"\(text)\"") }
        }
        requirements = reqs
    }

    /// Splits at commas that are not inside parentheses.
    static func splitTopLevel(_ text: String) -> [String] {
        var parts: [String] = []
        var depth = 0
        var current = ""
        for c in text {
            if c == "(" { depth += 1 }
            if c == ")" { depth -= 1 }
            if c == "," && depth == 0 {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        parts.append(current)
        return parts
    }

    static func set(_ s: Substring) throws(ParseError) -> Set<String> {
        let t = String(s).trimmingWhitespace()
        guard t.hasPrefix("("), t.hasSuffix(")") else { throw ParseError(description: "invalid set \"\(t)\" in label selector") }
        return Set(t.dropFirst().dropLast().split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty })
    }

    public func matches(_ labels: [String: String]) -> Bool {
        for r in requirements {
            switch r {
            case .equals(let k, let v): if labels[k] != v { return false }
            case .notEquals(let k, let v): if labels[k] == v { return false }
            case .exists(let k): if labels[k] == nil { return false }
            case .notExists(let k): if labels[k] != nil { return false }
            case .in(let k, let vs): guard let v = labels[k], vs.contains(v) else { return false }
            case .notIn(let k, let vs): if let v = labels[k], vs.contains(v) { return false }
            }
        }
        return true
    }
}
