import SluiceCore

/// A Kubernetes field selector in its query-string form: `metadata.name=web,status.phase!=Running`.
/// Every kind supports `metadata.name` and `metadata.namespace`; some kinds add a few more
/// fields (`ResourceType.selectableFields`); anything else is refused, as the API server does.
public struct FieldSelector: Sendable, Hashable {
    public struct Term: Sendable, Hashable {
        public var field: String
        public var value: String
        public var negated: Bool
    }

    public var terms: [Term]
    public static let everything = FieldSelector(terms: [])

    public init(terms: [Term]) { self.terms = terms }

    public init(_ text: String, allowed: Set<String>) throws(LabelSelector.ParseError) {
        var terms: [Term] = []
        for part in text.split(separator: ",") {
            let p = part.trimmingWhitespace()
            if p.isEmpty { continue }
            let field: String, value: String, negated: Bool
            if let r = p.firstRange(of: "!=") {
                (field, value, negated) = (String(p[..<r.lowerBound]), String(p[r.upperBound...]), true)
            } else if let r = p.firstRange(of: "==") {
                (field, value, negated) = (String(p[..<r.lowerBound]), String(p[r.upperBound...]), false)
            } else if let r = p.firstRange(of: "=") {
                (field, value, negated) = (String(p[..<r.lowerBound]), String(p[r.upperBound...]), false)
            } else {
                throw LabelSelector.ParseError(description: "invalid field selector term \"\(p)\": expected FIELD=VALUE or FIELD!=VALUE")
            }
            let f = field.trimmingWhitespace()
            guard allowed.contains(f) else {
                throw LabelSelector.ParseError(
                    description: "field label not supported: \(f) (supported: \(allowed.sorted().joined(separator: ", ")))")
            }
            terms.append(Term(field: f, value: value.trimmingWhitespace(), negated: negated))
        }
        self.terms = terms
    }

    public func matches(_ object: JSONValue) -> Bool {
        for t in terms {
            var v: JSONValue? = object
            for k in t.field.split(separator: ".") { v = v?[String(k)] }
            let actual: String
            switch v {
            case .string(let s)?: actual = s
            case .int(let i)?: actual = String(i)
            case .bool(let b)?: actual = b ? "true" : "false"
            default: actual = ""
            }
            if (actual == t.value) == t.negated { return false }
        }
        return true
    }
}

extension ResourceType {
    /// The fields a field selector may name for this kind.
    public var selectableFields: Set<String> {
        var f: Set<String> = ["metadata.name", "metadata.namespace"]
        switch (group, plural) {
        case ("", "pods"): f.formUnion(["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"])
        case ("", "secrets"): f.insert("type")
        case ("", "namespaces"): f.insert("status.phase")
        case ("", "events"): f.formUnion(["involvedObject.kind", "involvedObject.name", "involvedObject.namespace", "reason", "type"])
        default: break
        }
        return f
    }

    /// Whether `status` is a subresource: written only through `/status`, and left alone
    /// by updates of the object itself.
    public var hasStatusSubresource: Bool {
        switch plural {
        case "endpoints", "endpointslices", "secrets", "configmaps", "leases", "ingressclasses": return false
        default: return true
        }
    }
}
