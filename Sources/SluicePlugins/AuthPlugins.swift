import NIOHTTP1
import SluiceCore

/// What every authentication plugin does on success: attach the consumer and tell the
/// upstream who it is.
func attach(_ consumer: CompiledConsumer, to r: PluginRequest) {
    r.consumer = consumer
    r.headers.replaceOrAdd(name: "X-Consumer-Username", value: consumer.username)
    if let id = consumer.labels["custom_id"], HeaderSyntax.isSafeValue(id) { r.headers.replaceOrAdd(name: "X-Consumer-Custom-Id", value: id) }
}

/// The configured realm, for a WWW-Authenticate value (the default when it could not be sent).
func realmValue(_ c: JSONValue, default d: String) -> String {
    guard let s = c["realm"]?.stringValue, HeaderSyntax.isSafeValue(s) else { return d }
    return s
}

/// The `anonymous_consumer` fallback, or the rejection. As APISIX: a missing and a wrong
/// credential both fall back; `hide` (hide_credentials) strips the credential before the
/// request goes on as the anonymous consumer; a missing anonymous consumer is refused with
/// the realm's challenge.
func anonymousOr(
    _ reply: PluginReply, _ anonymous: String?, _ r: PluginRequest, realm: (String, String), hide: (() -> Void)? = nil
) -> PluginAction {
    guard let anonymous else { return .respond(reply) }
    guard let c = r.consumers.byUsername[anonymous] else { return .respond(.message(401, "Invalid user authorization", headers: [realm])) }
    hide?()
    attach(c, to: r)
    return .next
}

/// key-auth: a consumer's key from a header (default `apikey`) or, when the header is
/// absent, a query argument.
final class KeyAuthPlugin: HTTPPlugin {
    static let name = "key-auth"
    let header: String
    let query: String
    let hideCredentials: Bool
    let anonymous: String?
    let realmHeader: (String, String)
    init(_ c: JSONValue) {
        header = c["header"]?.stringValue ?? "apikey"
        query = c["query"]?.stringValue ?? "apikey"
        hideCredentials = c["hide_credentials"] == true
        anonymous = c["anonymous_consumer"]?.stringValue
        realmHeader = ("WWW-Authenticate", "apikey realm=\"\(realmValue(c, default: "key"))\"")
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        var key = r.headers.first(name: header)
        var fromQuery = false
        if key == nil, let q = r.query {
            key = PercentDecoding.queryPairs(Substring(q)).first { $0.name == query }?.value
            fromQuery = key != nil
        }
        let hide: (() -> Void)? = hideCredentials ? { [header, query] in
            r.headers.remove(name: header)
            r.removeQueryArgument(query)
        } : nil
        // An empty key is a key that matches no consumer, as APISIX reads it.
        guard let key else {
            return anonymousOr(.message(401, "Missing API key in request", headers: [realmHeader]), anonymous, r, realm: realmHeader, hide: hide)
        }
        guard let consumer = r.consumers.byKey[key] else {
            return anonymousOr(.message(401, "Invalid API key in request", headers: [realmHeader]), anonymous, r, realm: realmHeader, hide: hide)
        }
        if hideCredentials {
            if fromQuery { r.removeQueryArgument(query) } else { r.headers.remove(name: header) }
        }
        attach(consumer, to: r)
        return .next
    }
}

/// basic-auth: `Authorization: Basic base64(user:password)` against consumers' credentials.
final class BasicAuthPlugin: HTTPPlugin {
    static let name = "basic-auth"
    let hideCredentials: Bool
    let anonymous: String?
    let realmHeader: (String, String)
    init(_ c: JSONValue) {
        hideCredentials = c["hide_credentials"] == true
        anonymous = c["anonymous_consumer"]?.stringValue
        realmHeader = ("WWW-Authenticate", "Basic realm=\"\(realmValue(c, default: "basic"))\"")
    }

    func rewrite(_ r: PluginRequest) -> PluginAction {
        let hide: (() -> Void)? = hideCredentials ? { r.headers.remove(name: "authorization") } : nil
        guard let value = r.headers.first(name: "authorization") else {
            return anonymousOr(.message(401, "Missing authorization in request", headers: [realmHeader]), anonymous, r, realm: realmHeader, hide: hide)
        }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic", let decoded = Base64.decode(String(parts[1]).trimmingWhitespace()),
            let text = String(validating: decoded, as: UTF8.self), let colon = text.firstIndex(of: ":")
        else {
            return anonymousOr(.message(401, "Invalid authorization in request", headers: [realmHeader]), anonymous, r, realm: realmHeader, hide: hide)
        }
        let user = String(text[..<colon]).filter { !$0.isWhitespace }
        let password = String(text[text.index(after: colon)...]).filter { !$0.isWhitespace }
        guard let consumer = r.consumers.byBasicUser[user], consumer.credentials["basic-auth"]?["password"]?.stringValue == password else {
            return anonymousOr(.message(401, "Invalid user authorization", headers: [realmHeader]), anonymous, r, realm: realmHeader, hide: hide)
        }
        if hideCredentials { r.headers.remove(name: "authorization") }
        attach(consumer, to: r)
        return .next
    }
}

/// consumer-restriction: allow or deny by consumer name, route id or service id, and per
/// consumer by method.
final class ConsumerRestrictionPlugin: HTTPPlugin {
    static let name = "consumer-restriction"
    let type: String
    let whitelist: Set<String>?
    let blacklist: Set<String>?
    let methodsByUser: [String: Set<String>]
    let rejectedCode: Int
    let rejectedMessage: String?

    init(_ c: JSONValue) {
        type = c["type"]?.stringValue ?? "consumer_name"
        whitelist = c["whitelist"]?.arrayValue.map { Set($0.compactMap(\.stringValue)) }
        blacklist = c["blacklist"]?.arrayValue.map { Set($0.compactMap(\.stringValue)) }
        var m: [String: Set<String>] = [:]
        for item in c["allowed_by_methods"]?.arrayValue ?? [] {
            if let u = item["user"]?.stringValue { m[u, default: []].formUnion((item["methods"]?.arrayValue ?? []).compactMap(\.stringValue)) }
        }
        methodsByUser = m
        rejectedCode = PluginLimits.status(c["rejected_code"], default: 403)
        rejectedMessage = c["rejected_msg"]?.stringValue
    }

    func access(_ r: PluginRequest) -> PluginAction {
        let value: String?
        switch type {
        case "route_id": value = r.routeID
        case "service_id": value = r.serviceID
        default: value = r.consumer?.username
        }
        guard let value else { return .respond(.message(401, "The request is rejected, please check the \(type) for this request")) }
        let reject = PluginAction.respond(.message(rejectedCode, rejectedMessage ?? "The \(type) is forbidden."))
        if let blacklist, blacklist.contains(value) { return reject }
        if let whitelist {
            // Whitelisted values pass whatever the method; others are refused.
            return whitelist.contains(value) ? .next : reject
        }
        // A user listed in allowed_by_methods may use only those methods; others pass.
        if let allowed = methodsByUser[value], !allowed.contains(r.method.rawValue) { return reject }
        return .next
    }
}
