/// A request variable a `vars` expression can read, resolved once at compile time.
public enum RequestVariable: Sendable, Hashable {
    case header(String)  // http_x_canary → "x-canary" (lower case, '_' read as '-')
    case arg(String)  // arg_name
    case cookie(String)  // cookie_name
    /// post_arg_name: a field of an `application/x-www-form-urlencoded` request body (its
    /// first value, decoded), for route `vars`; the gateway reads such bodies before routing
    /// only when a route asks for one.
    case postArg(String)
    case uri, requestURI, host, remoteAddr, remotePort, serverAddr, serverPort, requestMethod, scheme, queryString
    /// Known once plugins ran: the authenticated consumer, the matched route and service,
    /// and (in response phases) the response status.
    case consumerName, routeID, serviceID, status
    /// The node picked for the request (known in the response phases), as APISIX's.
    case balancerIP, balancerPort
    /// `https`, `ssl_server_name`, `ssl_client_*`: what the connection's TLS handshake settled.
    case tls(TLSVariable)

    /// Parses an APISIX/NGINX variable name. Returns nil for names Sluice does not know.
    public init?(name: String) {
        if name.hasPrefix("http_"), name.count > 5 {
            self = .header(String(name.dropFirst(5).lowercased().map { $0 == "_" ? "-" : $0 }))
        } else if name.hasPrefix("arg_"), name.count > 4 {
            self = .arg(String(name.dropFirst(4)))
        } else if name.hasPrefix("cookie_"), name.count > 7 {
            self = .cookie(String(name.dropFirst(7)))
        } else if name.hasPrefix("post_arg_"), name.count > 9 {
            self = .postArg(String(name.dropFirst(9)))
        } else {
            switch name {
            case "uri": self = .uri
            case "request_uri": self = .requestURI
            case "host": self = .host
            case "remote_addr": self = .remoteAddr
            case "remote_port": self = .remotePort
            case "server_addr": self = .serverAddr
            case "server_port": self = .serverPort
            case "request_method": self = .requestMethod
            case "scheme": self = .scheme
            case "query_string", "args": self = .queryString
            case "consumer_name": self = .consumerName
            case "route_id": self = .routeID
            case "service_id": self = .serviceID
            case "status": self = .status
            case "balancer_ip": self = .balancerIP
            case "balancer_port": self = .balancerPort
            default:
                guard let t = TLSVariable(rawValue: name) else { return nil }
                self = .tls(t)
            }
        }
    }
}

/// Where an expression reads request variables from; the proxy implements it over the live
/// request, tests over a dictionary. Class-bound so that passing one around costs a pointer,
/// not a copy of a request head through a generic value witness.
public protocol RequestVariableSource: AnyObject {
    func value(of variable: RequestVariable) -> String?
}

/// A compiled regular expression, shared read-only by all event loops. Matching runs on
/// `LinearRegex`, whose cost is linear in the input whatever the pattern (no backtracking:
/// `(a+)+$` against "aaaa…!" costs what `a+$` does), so a pattern in a route or plugin cannot
/// stall an event loop. PCRE constructs that need backtracking (backreferences, lookaround,
/// atomic groups) are refused when the config is validated, with the construct named.
public final class CompiledRegex: Sendable {
    public let pattern: String
    let regex: LinearRegex

    public init(_ pattern: String, caseInsensitive: Bool = false) throws(RegexSyntaxError) {
        self.pattern = pattern
        regex = try LinearRegex(pattern, caseInsensitive: caseInsensitive)
    }

    public func matches(_ s: String) -> Bool {
        regex.matches(s)
    }

    /// The capture groups of the first match (`[0]` the whole match; a group that took no
    /// part is ""), or nil when nothing matches.
    public func captures(in s: String) -> [String]? {
        guard let groups = regex.firstMatch(in: s) else { return nil }
        return groups.map { $0.map { String(s[$0]) } ?? "" }
    }

    /// Whether `template` uses only what a replacement can name: `$N`, `${N}` and `$$` (as
    /// NGINX's `ngx.re.sub`, which refuses `$name`).
    public static func isValidReplacement(_ template: String) -> Bool {
        var chars = template.makeIterator()
        while let c = chars.next() {
            guard c == "$" else { continue }
            switch chars.next() {
            case "$"?: continue
            case "{"?:
                var digits = 0
                var closed = false
                while let d = chars.next() {
                    if d == "}" { closed = true; break }
                    guard d.isASCII, d.isNumber else { return false }
                    digits += 1
                }
                if !closed || digits == 0 { return false }
            case let d? where d.isASCII && d.isNumber: continue
            default: return false
            }
        }
        return true
    }

    /// Replaces the first match with `template`, where `$0`..`$9` and `${N}` name capture
    /// groups and `$$` is a dollar sign.
    public func replaceFirst(in s: String, with template: String) -> String? {
        guard let groups = regex.firstMatch(in: s), let whole = groups.first ?? nil else { return nil }
        return String(s[..<whole.lowerBound]) + Self.expand(template, groups, in: s) + String(s[whole.upperBound...])
    }

    /// Replaces every match (`$0`..`$9` in `template` name capture groups).
    public func replaceAll(in s: String, with template: String) -> String {
        var out = ""
        var rest = s[...]
        while !rest.isEmpty, let groups = regex.firstMatch(in: rest), let whole = groups.first ?? nil {
            out += s[rest.startIndex..<whole.lowerBound]
            out += Self.expand(template, groups, in: s)
            if whole.isEmpty {
                // An empty match: keep one character and go on after it.
                guard whole.upperBound < rest.endIndex else { rest = rest[rest.endIndex...]; break }
                out.append(s[whole.upperBound])
                rest = s[s.index(after: whole.upperBound)..<rest.endIndex]
            } else {
                rest = s[whole.upperBound..<rest.endIndex]
            }
        }
        return out + rest
    }

    static func expand(_ template: String, _ groups: [Range<String.Index>?], in s: String) -> String {
        var out = ""
        var chars = template.makeIterator()
        while let c = chars.next() {
            if c == "$" {
                guard let d = chars.next() else { out.append("$"); break }
                if d == "$" {
                    out.append("$")
                } else if d == "{" {
                    var digits = ""
                    var closed = false
                    while let e = chars.next() {
                        if e == "}" { closed = true; break }
                        digits.append(e)
                    }
                    if closed, digits.count <= 4, let n = Int(digits) {
                        if n < groups.count, let r = groups[n] { out += s[r] }
                    } else {
                        out += "${" + digits + (closed ? "}" : "")
                    }
                } else if let n = d.wholeNumberValue, n < groups.count {
                    if let r = groups[n] { out += s[r] }
                } else {
                    out.append("$")
                    out.append(d)
                }
            } else {
                out.append(c)
            }
        }
        return out
    }
}

/// A `vars` expression (lua-resty-expr syntax): `[["arg_name","==","json"],["http_x","~~","^a"]]`,
/// optionally with `"AND"` / `"OR"` / `"!AND"` / `"!OR"` heads for nesting.
public indirect enum VarsExpression: Sendable {
    case all([VarsExpression])
    case any([VarsExpression])
    case not(VarsExpression)
    case condition(VarCondition)

    /// Whether any condition reads a `post_arg_*` variable (the request body).
    public var readsPostArgs: Bool {
        switch self {
        case .all(let e), .any(let e): return e.contains { $0.readsPostArgs }
        case .not(let e): return e.readsPostArgs
        case .condition(let c):
            if case .postArg = c.variable { return true }
            return false
        }
    }

    public func evaluate(_ source: any RequestVariableSource) -> Bool {
        switch self {
        case .all(let exprs):
            for e in exprs where !e.evaluate(source) { return false }
            return true
        case .any(let exprs):
            for e in exprs where e.evaluate(source) { return true }
            return false
        case .not(let e):
            return !e.evaluate(source)
        case .condition(let c):
            return c.evaluate(source)
        }
    }

    /// Parses and compiles an expression; errors name the element (`vars[1][1]`).
    public static func parse(_ value: JSONValue, path: String) throws(ConfigError) -> VarsExpression {
        guard case .array(let items) = value else {
            throw ConfigError(path: path, "must be an array, got \(value.typeName)")
        }
        if case .string(let head)? = items.first {
            let logical: String = head.uppercased()
            if ["AND", "OR", "!AND", "!OR"].contains(logical) {
                var subs: [VarsExpression] = []
                for (i, item) in items.enumerated().dropFirst() {
                    subs.append(try parseNested(item, path: FieldPath.index(path, i)))
                }
                guard !subs.isEmpty else { throw ConfigError(path: path, "\(head) needs at least one expression") }
                let base: VarsExpression = logical.hasSuffix("OR") ? .any(subs) : .all(subs)
                return logical.hasPrefix("!") ? .not(base) : base
            }
            // A single bare condition at top level is not APISIX syntax.
            throw ConfigError(path: path, "must be an array of [variable, operator, value] arrays")
        }
        var subs: [VarsExpression] = []
        for (i, item) in items.enumerated() {
            subs.append(try parseNested(item, path: FieldPath.index(path, i)))
        }
        return .all(subs)
    }

    static func parseNested(_ value: JSONValue, path: String) throws(ConfigError) -> VarsExpression {
        guard case .array(let items) = value else {
            throw ConfigError(path: path, "must be an array, got \(value.typeName)")
        }
        if case .string(let head)? = items.first, ["AND", "OR", "!AND", "!OR"].contains(head.uppercased()) {
            return try parse(value, path: path)
        }
        if case .array? = items.first {
            return try parse(value, path: path)
        }
        return .condition(try VarCondition.parse(items, path: path))
    }
}

public struct VarCondition: Sendable {
    public enum Operator: String, Sendable {
        case equal = "=="
        case notEqual = "~="
        case greater = ">"
        case less = "<"
        case greaterOrEqual = ">="
        case lessOrEqual = "<="
        case regex = "~~"
        case regexCaseInsensitive = "~*"
        case `in` = "in"
        case has = "has"
        case ipmatch = "ipmatch"
    }

    public enum Operand: Sendable {
        /// JSON `null`: stands for a missing variable (`["http_x","==",null]` holds when the
        /// request has no `X` header), as lua-resty-expr reads it.
        case missing
        case string(String)
        case number(Double)
        case list([String])
        case regex(CompiledRegex)
        case cidrs([CIDR])
    }

    public let variable: RequestVariable
    public let op: Operator
    public let operand: Operand
    public let negated: Bool

    static func parse(_ items: [JSONValue], path: String) throws(ConfigError) -> VarCondition {
        var items = items
        if items.count == 2, case .string(let value) = items[1], Operator(rawValue: value.lowercased()) == nil, value != "!" {
            // lua-resty-expr's short form `[variable, value]` is `==` with the value lower-cased.
            items = [items[0], .string("=="), .string(value.lowercased())]
        }
        guard items.count == 3 || items.count == 4 else {
            throw ConfigError(path: path, "must be [variable, operator, value], [variable, \"!\", operator, value] or [variable, value]")
        }
        guard case .string(let name) = items[0] else {
            throw ConfigError(path: FieldPath.index(path, 0), "variable name must be a string")
        }
        guard let variable = RequestVariable(name: name) else {
            throw ConfigError(
                path: FieldPath.index(path, 0),
                "unknown variable \"\(name)\" (use http_*, arg_*, cookie_*, post_arg_*, uri, request_uri, host, remote_addr, remote_port, server_addr, server_port, request_method, scheme, query_string)"
            )
        }
        var opIndex = 1
        var negated = false
        if items.count == 4 {
            guard case .string("!") = items[1] else {
                throw ConfigError(path: FieldPath.index(path, 1), "with four elements the second must be \"!\"")
            }
            negated = true
            opIndex = 2
        }
        guard case .string(let opText) = items[opIndex], let op = Operator(rawValue: opText.lowercased()) else {
            throw ConfigError(
                path: FieldPath.index(path, opIndex),
                "unknown operator (use ==, ~=, >, <, >=, <=, ~~, ~*, in, has, ipmatch, or \"!\" before one)"
            )
        }
        let valuePath = FieldPath.index(path, opIndex + 1)
        let raw = items[opIndex + 1]
        let operand: Operand
        switch op {
        case .equal where raw == .null, .notEqual where raw == .null:
            operand = .missing
        case .equal, .notEqual, .has:
            switch raw {
            case .string(let s): operand = .string(s)
            case .int(let i): operand = .string(String(i))
            case .double(let d): operand = .number(d)
            case .bool(let b): operand = .string(b ? "true" : "false")
            default: throw ConfigError(path: valuePath, "must be a string or a number")
            }
        case .greater, .less, .greaterOrEqual, .lessOrEqual:
            guard let d = raw.doubleValue ?? raw.stringValue.flatMap(Double.init) else {
                throw ConfigError(path: valuePath, "must be a number")
            }
            operand = .number(d)
        case .regex, .regexCaseInsensitive:
            guard case .string(let pattern) = raw else { throw ConfigError(path: valuePath, "must be a regular expression string") }
            do {
                operand = .regex(try CompiledRegex(pattern, caseInsensitive: op == .regexCaseInsensitive))
            } catch {
                throw ConfigError(path: valuePath, "invalid regular expression: \(error)")
            }
        case .in:
            guard case .array(let values) = raw else { throw ConfigError(path: valuePath, "must be an array") }
            var list: [String] = []
            for (i, v) in values.enumerated() {
                switch v {
                case .string(let s): list.append(s)
                case .int(let n): list.append(String(n))
                case .double(let d): list.append(FieldReader.format(d))
                default: throw ConfigError(path: FieldPath.index(valuePath, i), "must be a string or a number")
                }
            }
            operand = .list(list)
        case .ipmatch:
            let texts: [JSONValue]
            if case .array(let a) = raw { texts = a } else { texts = [raw] }
            var cidrs: [CIDR] = []
            for (i, t) in texts.enumerated() {
                guard case .string(let s) = t, let c = CIDR(s) else {
                    throw ConfigError(path: texts.count == 1 ? valuePath : FieldPath.index(valuePath, i), "must be an IP address or CIDR")
                }
                cidrs.append(c)
            }
            operand = .cidrs(cidrs)
        }
        return VarCondition(variable: variable, op: op, operand: operand, negated: negated)
    }

    public func evaluate(_ source: any RequestVariableSource) -> Bool {
        let result = evaluateRaw(source.value(of: variable))
        return negated ? !result : result
    }

    func evaluateRaw(_ value: String?) -> Bool {
        switch (op, operand) {
        case (.equal, .missing): return value == nil
        case (.notEqual, .missing): return value != nil
        case (.equal, .string(let s)): return value == s
        case (.equal, .number(let n)): return value.flatMap(Double.init) == n
        case (.notEqual, .string(let s)): return value != s
        // A value that is not a number differs from any number (lua-resty-expr's `~=`).
        case (.notEqual, .number(let n)): return value.flatMap(Double.init) != n
        case (.greater, .number(let n)):
            guard let v = value.flatMap(Double.init) else { return false }
            return v > n
        case (.less, .number(let n)):
            guard let v = value.flatMap(Double.init) else { return false }
            return v < n
        case (.greaterOrEqual, .number(let n)):
            guard let v = value.flatMap(Double.init) else { return false }
            return v >= n
        case (.lessOrEqual, .number(let n)):
            guard let v = value.flatMap(Double.init) else { return false }
            return v <= n
        case (.regex, .regex(let r)), (.regexCaseInsensitive, .regex(let r)):
            guard let value else { return false }
            return r.matches(value)
        case (.in, .list(let list)):
            guard let value else { return false }
            return list.contains(value)
        case (.has, .string(let s)):
            // Multi-valued variables (a repeated header, a list) arrive joined with ", ".
            guard let value else { return false }
            return value.split(separator: ",").contains { $0.trimmingWhitespace() == s }
        case (.has, .number(let n)):
            guard let value else { return false }
            return value.split(separator: ",").contains { Double($0.trimmingWhitespace()) == n }
        case (.ipmatch, .cidrs(let cidrs)):
            guard let value, let ip = IPAddress(value) else { return false }
            return cidrs.contains { $0.contains(ip) }
        default:
            return false
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing whitespace (spaces, tabs, line breaks).
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}

/// The NGINX TLS variables Sluice has, by their NGINX names.
public enum TLSVariable: String, Sendable, Hashable, CaseIterable {
    /// `on` on a TLS connection, empty otherwise.
    case https
    case sslServerName = "ssl_server_name"
    case sslProtocol = "ssl_protocol"
    /// `SUCCESS` when the client showed a certificate that verified, `NONE` when it showed none.
    case sslClientVerify = "ssl_client_verify"
    case sslClientSubjectDN = "ssl_client_s_dn"
    case sslClientIssuerDN = "ssl_client_i_dn"
    case sslClientSerial = "ssl_client_serial"
}

/// What a TLS connection's handshake settled, for variables, plugins and mTLS checks.
/// Made once per connection, after its handshake.
public final class TLSConnectionInfo: Sendable {
    public let serverName: String?
    /// `TLSv1.3`, `TLSv1.2`.
    public let protocolVersion: String
    public let clientSubjectDN: String?
    public let clientIssuerDN: String?
    public let clientSerial: String?
    /// The `ssls` object that served the handshake.
    public let sslID: String

    public init(
        serverName: String?, protocolVersion: String, sslID: String, clientSubjectDN: String? = nil, clientIssuerDN: String? = nil,
        clientSerial: String? = nil
    ) {
        self.serverName = serverName
        self.protocolVersion = protocolVersion
        self.sslID = sslID
        self.clientSubjectDN = clientSubjectDN
        self.clientIssuerDN = clientIssuerDN
        self.clientSerial = clientSerial
    }

    /// A certificate was shown and verified (the handshake fails on one that does not).
    public var hasClientCertificate: Bool { clientSubjectDN != nil }

    public func value(_ v: TLSVariable) -> String? {
        switch v {
        case .https: return "on"
        case .sslServerName: return serverName
        case .sslProtocol: return protocolVersion
        case .sslClientVerify: return hasClientCertificate ? "SUCCESS" : "NONE"
        case .sslClientSubjectDN: return clientSubjectDN
        case .sslClientIssuerDN: return clientIssuerDN
        case .sslClientSerial: return clientSerial
        }
    }
}
