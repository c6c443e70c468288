import NIOHTTP1
import SluiceCore

/// request-id: gives each request an id (unless the client sent one) in a header, to the
/// upstream and back in the response.
final class RequestIDPlugin: HTTPPlugin {
    static let name = "request-id"
    static let nanoidAlphabet = Array("useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict")
    let header: String
    let includeInResponse: Bool
    let algorithm: String
    let rangeLength: Int
    let rangeCharset: [Character]

    static let defaultCharset = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789")

    init(_ c: JSONValue) {
        let h = c["header_name"]?.stringValue ?? "X-Request-Id"
        header = HeaderSyntax.isToken(h) ? h : "X-Request-Id"
        includeInResponse = c["include_in_response"] != false
        algorithm = c["algorithm"]?.stringValue ?? "uuid"
        // 6...128 characters (the schema's range): an id, not an allocation a config sizes.
        rangeLength = PluginLimits.int(c["range_id"]?["length"], PluginLimits.rangeIDLength, default: 16)
        // Visible ASCII only, as the schema requires: the id goes into a header.
        let set = Array(c["range_id"]?["char_set"]?.stringValue ?? "").filter { ch in ch.asciiValue.map { (0x21...0x7E).contains($0) } ?? false }
        rangeCharset = set.isEmpty ? Self.defaultCharset : set
    }

    var hasResponsePhases: Bool { includeInResponse }

    static func uuid() -> String {
        var g = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { b -> String in
            let s = String(b, radix: 16)
            return s.count == 1 ? "0" + s : s
        }.joined()
        let h = Array(hex)
        return "\(String(h[0..<8]))-\(String(h[8..<12]))-\(String(h[12..<16]))-\(String(h[16..<20]))-\(String(h[20..<32]))"
    }

    func generate() -> String {
        switch algorithm {
        case "nanoid": return String((0..<21).map { _ in Self.nanoidAlphabet.randomElement() ?? "x" })
        case "range_id": return String((0..<rangeLength).map { _ in rangeCharset.randomElement() ?? "x" })
        default: return Self.uuid()
        }
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        var id = r.headers.first(name: header) ?? ""
        if id.isEmpty {
            id = generate()
            r.headers.replaceOrAdd(name: header, value: id)
        }
        r.scratch[ObjectIdentifier(self)] = id
        return .next
    }

    func headerFilter(_ r: PluginRequest, _ response: inout PluginResponse) {
        guard includeInResponse, let id = r.scratch[ObjectIdentifier(self)] as? String, !response.headers.contains(name: header) else { return }
        response.headers.add(name: header, value: id)
    }
}

/// Whether a fault with `percentage` and `vars` applies to this request. `vars` is a list
/// of expressions, each its own group: any group that holds triggers the fault (as APISIX),
/// and an empty list never does.
private func faultApplies(_ percentage: Int?, _ vars: [VarsExpression]?, _ r: PluginRequest) -> Bool {
    if let vars, !vars.contains(where: { $0.evaluate(r) }) { return false }
    if let p = percentage { return Int.random(in: 1...100) <= p }
    return true
}

/// fault-injection: delays and aborts, each for a share of requests and/or requests
/// matching `vars`: the delay first, then the abort.
final class FaultInjectionPlugin: HTTPPlugin {
    static let name = "fault-injection"
    let abortStatus: Int?
    let abortBody: Template?
    let abortHeaders: [(String, Template)]
    let abortPercentage: Int?
    let abortVars: [VarsExpression]?
    let delayNanos: UInt64?
    let delayPercentage: Int?
    let delayVars: [VarsExpression]?

    init(_ c: JSONValue) {
        let a = c["abort"]
        abortStatus = a.map { PluginLimits.status($0["http_status"], default: 500) }
        abortBody = a?["body"]?.stringValue.map(Template.init)
        abortHeaders = (a?["headers"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.filter { HeaderSyntax.isToken($0.key) }
            .map { ($0.key, Template(HeaderActions.text($0.value))) }
        abortPercentage = a?["percentage"].map { PluginLimits.int($0, 0...100, default: 100) }
        abortVars = a?["vars"].map(Self.groups)
        let d = c["delay"]
        delayNanos = d?["duration"]?.doubleValue.map { Nanos.from(seconds: $0) }
        delayPercentage = d?["percentage"].map { PluginLimits.int($0, 0...100, default: 100) }
        delayVars = d?["vars"].map(Self.groups)
    }

    /// `vars` as groups; one that does not parse (the schema refuses it) never holds.
    static func groups(_ value: JSONValue) -> [VarsExpression] {
        (value.arrayValue ?? []).compactMap { try? VarsExpression.parse($0, path: "") }
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        var reply: PluginReply? = nil
        if let abortStatus, faultApplies(abortPercentage, abortVars, r) {
            // A header whose rendered value could not be sent (a control character) is left out.
            let headers = abortHeaders.map { ($0.0, $0.1.render(r)) }.filter { HeaderSyntax.isSafeValue($0.1) }
            reply = PluginReply(status: abortStatus, headers: headers, body: Array((abortBody?.render(r) ?? "").utf8))
        }
        if let delayNanos, delayNanos > 0, faultApplies(delayPercentage, delayVars, r) {
            return .delay(nanoseconds: delayNanos, then: reply)
        }
        if let reply { return .respond(reply) }
        return .next
    }
}

/// mocking: answers from the gateway with an example, or data generated from a JSON schema.
final class MockingPlugin: HTTPPlugin {
    static let name = "mocking"
    let status: Int
    let contentType: String
    let example: Template?
    let schema: JSONValue?
    let delayNanos: UInt64
    let headers: [(String, String)]
    /// `response_headers`, whose values may name variables (`$route_id`), as APISIX's.
    let templatedHeaders: [(String, Template)]

    init(_ c: JSONValue) {
        status = PluginLimits.status(c["response_status"], default: 200)
        let type = c["content_type"]?.stringValue ?? "application/json;charset=utf8"
        contentType = HeaderSyntax.isSafeValue(type) ? type : "application/json;charset=utf8"
        example = c["response_example"]?.stringValue.map(Template.init)
        schema = c["response_schema"]
        delayNanos = Nanos.from(seconds: PluginLimits.int(c["delay"], 0...Int(PluginLimits.maxDelaySeconds), default: 0))
        var h: [(String, String)] = [("Content-Type", contentType)]
        if c["with_mock_header"] != false { h.append(("x-mock-by", "Sluice")) }
        var t: [(String, Template)] = []
        for (k, v) in (c["response_headers"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) {
            let text = HeaderActions.text(v)
            if HeaderSyntax.isToken(k), HeaderSyntax.isSafeValue(text) { t.append((k, Template(text))) }
        }
        headers = h
        templatedHeaders = t
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let body: String
        if let example {
            body = example.render(r)
        } else if let schema {
            var budget = Self.maxGeneratedValues
            let data = Self.generate(schema, depth: 0, budget: &budget)
            let main = contentType.split(separator: ";").first.map { String($0).trimmingWhitespace().lowercased() } ?? ""
            body = main.hasSuffix("xml") ? "<data>\(Self.xml(data))</data>" : data.serialized()
        } else {
            body = ""
        }
        var all = headers
        for (k, t) in templatedHeaders {
            let v = t.render(r)
            // A value that renders with a control character cannot be sent: left out.
            if HeaderSyntax.isSafeValue(v) { all.append((k, v)) }
        }
        let reply = PluginReply(status: status, headers: all, body: Array(body.utf8))
        return delayNanos > 0 ? .delay(nanoseconds: delayNanos, then: reply) : .respond(reply)
    }

    /// At most this many values are generated per response: a schema of nested arrays of
    /// objects with many properties would otherwise multiply into billions.
    static let maxGeneratedValues = 10_000
    static let letters = Array("abcdefghijklmnopqrstuvwxyz")

    /// A value of the schema's shape; `example` values are used as given. Each generated
    /// value takes one from `budget`; once it is spent, objects and arrays come out empty.
    static func generate(_ schema: JSONValue, depth: Int, budget: inout Int) -> JSONValue {
        budget -= 1
        if let e = schema["example"] { return e }
        switch schema["type"]?.stringValue ?? "object" {
        case "string": return .string(String((0..<8).map { _ in letters.randomElement() ?? "a" }))
        case "integer": return .int(Int64.random(in: 0...1000))
        case "number": return .double(Double(Int.random(in: 0...100_000)) / 100)
        case "boolean": return .bool(Bool.random())
        case "array":
            guard depth < 8, budget > 0, let items = schema["items"] else { return [] }
            var out: [JSONValue] = []
            for _ in 0..<Int.random(in: 1...3) where budget > 0 { out.append(generate(items, depth: depth + 1, budget: &budget)) }
            return .array(out)
        default:
            var o: [String: JSONValue] = [:]
            if depth < 8 {
                for (k, v) in (schema["properties"]?.objectValue ?? [:]).sorted(by: { $0.key < $1.key }) where budget > 0 {
                    o[k] = generate(v, depth: depth + 1, budget: &budget)
                }
            }
            return .object(o)
        }
    }

    static func xml(_ v: JSONValue) -> String {
        switch v {
        case .object(let o): return o.sorted(by: { $0.key < $1.key }).map { "<\($0.key)>\(xml($0.value))</\($0.key)>" }.joined()
        case .array(let a): return a.map { "<item>\(xml($0))</item>" }.joined()
        case .string(let s): return s.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;")
        default: return v.serialized()
        }
    }
}

/// proxy-rewrite: what the upstream receives: URI (a template, or regex rewrites), method,
/// Host, and headers.
final class ProxyRewritePlugin: HTTPPlugin {
    static let name = "proxy-rewrite"
    let uri: Template?
    let regexURI: [(CompiledRegex, String)]
    let method: HTTPMethod?
    let host: String?
    let headers: HeaderActions

    init(_ c: JSONValue) {
        uri = c["uri"]?.stringValue.map(Template.init)
        var pairs: [(CompiledRegex, String)] = []
        let list = (c["regex_uri"]?.arrayValue ?? []).compactMap(\.stringValue)
        var i = 0
        while i + 1 < list.count {
            if let re = try? CompiledRegex(list[i]) { pairs.append((re, list[i + 1])) }
            i += 2
        }
        regexURI = pairs
        method = c["method"]?.stringValue.map { HTTPMethod(rawValue: $0) }
        host = c["host"]?.stringValue
        headers = HeaderActions(c["headers"])
    }

    static func isForwarding(_ name: String) -> Bool {
        switch name.lowercased() {
        case "x-real-ip", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port": return true
        default: return false
        }
    }

    /// Everything is rendered from the request as it came (so `$uri` and `$http_*` in header
    /// values are the client's), then the request is changed. A rewritten URI is one line:
    /// controls and spaces in it are percent-encoded. A header value that renders with a
    /// control character (CR, LF, NUL...) cannot be sent and has no encoding: the request is
    /// refused with 400 rather than forwarded without the header the route sets (which the
    /// upstream may rely on, e.g. an identity), and nothing reaches the upstream.
    func rewrite(_ r: PluginRequest) -> PluginAction {
        var newURI: String? = nil
        // The first matching regex_uri's groups, for `$1` in header values ("" without a match).
        var captures: [String]? = nil
        if let uri {
            newURI = uri.render(r)
        } else {
            for (re, template) in regexURI {
                if let groups = re.captures(in: r.path), let out = re.replaceFirst(in: r.path, with: template) {
                    newURI = out
                    captures = groups
                    break
                }
            }
            if captures == nil, !regexURI.isEmpty { captures = [] }
        }
        let rendered = headers.isEmpty ? nil : headers.render(r, captures: captures)
        if let rendered, !rendered.unsafe.isEmpty {
            return .respond(.errorMessage(400, "invalid value for header \(rendered.unsafe[0]) from the request"))
        }
        if let newURI = newURI.map(HeaderSyntax.encodingURIBreakers) {
            // The client's query string follows the new URI's own.
            if let q = newURI.firstIndex(of: "?") {
                let own = String(newURI[newURI.index(after: q)...])
                r.path = String(newURI[..<q])
                r.query = [own, r.query].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: "&")
                if r.query?.isEmpty == true { r.query = nil }
            } else {
                r.path = newURI
            }
        }
        if let method { r.method = method }
        if let host { r.upstreamHost = host }
        if let rendered {
            rendered.apply(to: &r.headers)
            // The forwarding headers the gateway writes itself: what the config said wins.
            for (name, _) in rendered.add + rendered.set where Self.isForwarding(name) {
                let value = r.headers[name].joined(separator: ", ")
                r.forwardingOverrides = (r.forwardingOverrides ?? []) + [(name, value.isEmpty ? nil : value)]
            }
            for name in rendered.remove + rendered.unsafeSet where Self.isForwarding(name) {
                r.forwardingOverrides = (r.forwardingOverrides ?? []) + [(name, nil)]
            }
        }
        return .next
    }
}

/// redirect: answers with a Location: to https, to a URI template, or to a regex rewrite of
/// the path.
final class RedirectPlugin: HTTPPlugin {
    static let name = "redirect"
    let httpToHTTPS: Bool
    let uri: Template?
    let regexURI: (CompiledRegex, String)?
    let code: Int
    let encodeURI: Bool
    let appendQuery: Bool
    let listeners: ListenerFacts

    init(_ c: JSONValue, listeners: ListenerFacts = ListenerFacts()) {
        self.listeners = listeners
        httpToHTTPS = c["http_to_https"] == true
        uri = c["uri"]?.stringValue.map(Template.init)
        if let list = c["regex_uri"]?.arrayValue, list.count == 2, let p = list[0].stringValue, let t = list[1].stringValue, let re = try? CompiledRegex(p) {
            regexURI = (re, t)
        } else {
            regexURI = nil
        }
        code = PluginLimits.status(c["ret_code"], default: 302)
        encodeURI = c["encode_uri"] == true
        appendQuery = c["append_query_string"] == true
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        if httpToHTTPS {
            // Behind a TLS-terminating balancer the client's scheme is X-Forwarded-Proto's.
            let scheme = r.headers.first(name: "x-forwarded-proto")?.trimmingWhitespace().lowercased() ?? r.scheme
            guard scheme != "https" else { return .next }
            let status = r.method == .GET || r.method == .HEAD ? 301 : 308
            // The gateway's TLS port, unless it is 443 (as APISIX, from its ssl listen).
            let port = listeners.httpsPort.map { $0 == 443 ? "" : ":\($0)" } ?? ""
            let location = HeaderSyntax.encodingURIBreakers("https://\(r.host ?? "")\(port)\(r.requestURI)")
            return .respond(PluginReply(status: status, headers: [("Location", location)]))
        }
        var target: String
        if let uri {
            target = uri.render(r)
        } else if let (re, template) = regexURI, let out = re.replaceFirst(in: r.path, with: template) {
            target = out
        } else {
            return .next
        }
        if encodeURI { target = Self.encode(target) }
        if appendQuery, let q = r.query, !q.isEmpty { target += (target.contains("?") ? "&" : "?") + q }
        // One line whatever the template rendered: controls and spaces are percent-encoded,
        // as a URI writes them (a Location with CR LF would split the response).
        return .respond(PluginReply(status: code, headers: [("Location", HeaderSyntax.encodingURIBreakers(target))]))
    }

    /// Percent-encodes what may not appear in a URI, keeping its structure characters.
    static func encode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            let c = Character(Unicode.Scalar(b))
            if b < 0x80, c.isLetter || c.isNumber || "-._~:/?#[]@!$&'()*+,;=%".contains(c) {
                out.append(c)
            } else {
                out += "%" + (b < 16 ? "0" : "") + String(b, radix: 16, uppercase: true)
            }
        }
        return out
    }
}

/// response-rewrite: the status, headers and body the client gets, when `vars` (which may
/// name `status`) match.
final class ResponseRewritePlugin: HTTPPlugin {
    static let name = "response-rewrite"
    let status: Int?
    let body: [UInt8]?
    let headers: HeaderActions
    let vars: VarsExpression?
    let filters: [(CompiledRegex, String, Bool)]

    init(_ c: JSONValue) {
        status = c["status_code"].map { PluginLimits.status($0, default: 200) }
        if let b = c["body"]?.stringValue {
            body = c["body_base64"] == true ? (Base64.decode(b) ?? []) : Array(b.utf8)
        } else {
            body = nil
        }
        headers = HeaderActions(c["headers"], addAsList: true)
        vars = c["vars"].flatMap { try? VarsExpression.parse($0, path: "") }
        filters = (c["filters"]?.arrayValue ?? []).compactMap { f in
            guard let p = f["regex"]?.stringValue, let re = try? CompiledRegex(p, caseInsensitive: (f["options"]?.stringValue ?? "").contains("i")) else { return nil }
            return (re, f["replace"]?.stringValue ?? "", f["scope"]?.stringValue == "global")
        }
    }

    var hasResponsePhases: Bool { true }

    func headerFilter(_ r: PluginRequest, _ response: inout PluginResponse) {
        if let vars, !vars.evaluate(r) { return }
        r.scratch[ObjectIdentifier(self)] = true
        if let status { response.status = status }
        // Filters read the body as text; a compressed one (gzip, br) is passed as it came,
        // with its Content-Encoding, rather than sent as bytes labelled plain.
        let encoding = response.headers.first(name: "content-encoding")?.trimmingWhitespace().lowercased() ?? ""
        let filtersApply = !filters.isEmpty && (encoding.isEmpty || encoding == "identity")
        if body != nil || filtersApply {
            response.bodyRewritten = true
            if body != nil { response.upstreamBodyUnused = true }
            // As APISIX's clear_header_as_body_modified: nothing that described the old body.
            for name in ["content-length", "content-encoding", "etag", "last-modified"] { response.headers.remove(name: name) }
        } else if !filters.isEmpty {
            // Another plugin may still rewrite the body (echo): this one's filters stay off it.
            r.scratch[ObjectIdentifier(self)] = nil
        }
        // Rendered first, then written. A value that renders with a control character is not
        // sent: an `add` of it is left out, a `set` of it removes the header (see
        // HeaderActions.Rendered.apply); the response goes on.
        if !headers.isEmpty { headers.render(r).apply(to: &response.headers) }
    }

    func transformBody(_ r: PluginRequest, _ original: [UInt8]) -> [UInt8] {
        guard r.scratch[ObjectIdentifier(self)] != nil else { return original }
        if let body { return body }
        // Filters are regular expressions over text: a body that is not UTF-8 passes as it is.
        guard !filters.isEmpty, var text = String(validating: original, as: UTF8.self) else { return original }
        for (re, replacement, global) in filters {
            text = global ? re.replaceAll(in: text, with: replacement) : (re.replaceFirst(in: text, with: replacement) ?? text)
        }
        return Array(text.utf8)
    }
}

/// echo: a body of the gateway's own, or text before and after the upstream's.
final class EchoPlugin: HTTPPlugin {
    static let name = "echo"
    let before: [UInt8]
    let body: [UInt8]?
    let after: [UInt8]
    let headers: [(String, String)]

    init(_ c: JSONValue) {
        before = Array((c["before_body"]?.stringValue ?? "").utf8)
        body = c["body"]?.stringValue.map { Array($0.utf8) }
        after = Array((c["after_body"]?.stringValue ?? "").utf8)
        headers = (c["headers"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, HeaderActions.text($0.value)) }
            .filter { HeaderSyntax.isToken($0.0) && HeaderSyntax.isSafeValue($0.1) }
    }

    var hasResponsePhases: Bool { true }

    func headerFilter(_ r: PluginRequest, _ response: inout PluginResponse) {
        response.bodyRewritten = true
        if body != nil { response.upstreamBodyUnused = true }
        response.headers.remove(name: "content-length")
        for (k, v) in headers { response.headers.replaceOrAdd(name: k, value: v) }
    }

    func transformBody(_ r: PluginRequest, _ original: [UInt8]) -> [UInt8] { before + (body ?? original) + after }
}
