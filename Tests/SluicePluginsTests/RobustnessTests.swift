import NIOCore
import NIOHTTP1
@testable import SluicePlugins
import SluiceCore
import Testing

/// Nothing a client or an operator sends may crash the gateway or grow it without bound:
/// regression tests for each defect of the robustness review (issue 12), driven without
/// sockets, as the proxy drives plugins.
@Suite struct RobustnessTests {
    // MARK: Driving plugins

    static func request(
        path: String = "/p", query: String? = nil, headers: [(String, String)] = [], host: String = "api.example.com", method: HTTPMethod = .GET
    ) -> PluginRequest {
        let uri = query.map { "\(path)?\($0)" } ?? path
        return PluginRequest(
            method: method, path: path, query: query, headers: HTTPHeaders(headers), requestURI: uri, host: host, remoteAddress: "10.0.0.1",
            clientIP: IPAddress("10.0.0.1"), remotePort: 50_000, serverAddress: "127.0.0.1", serverPort: 9080, scheme: "http", routeID: "1",
            serviceID: nil, startNanos: 0)
    }

    static func json(_ text: String) -> JSONValue {
        do { return try JSONValue.parse(text) } catch {
            Issue.record("test JSON does not parse: \(text): \(error)")
            return .null
        }
    }

    static func chain(_ configs: [String: JSONValue], state: PluginStateStore = PluginStateStore(), metrics: HTTPMetrics? = nil) -> PluginChain {
        var ctx = PluginCompileContext(owner: "routes/1", state: state, metrics: metrics)
        return PluginFactory.chain(configs, &ctx)
    }

    /// Validated configs, as the Admin API stores them.
    static func validated(_ configs: [String: String]) throws -> [String: JSONValue] {
        try PluginConfigs.validate(configs.mapValues(json), path: "plugins")
    }

    struct Result {
        /// The plugin reply, if one answered instead of the upstream.
        var reply: PluginReply?
        /// The response the client gets, after the header filters.
        var response: PluginResponse
        var body: [UInt8]
        var delays: [UInt64] = []
        var waited = false
    }

    /// Runs every phase: rewrite and access (following delays), then the header and body
    /// filters on the reply or on an upstream response, then the log phase.
    @discardableResult
    static func drive(
        _ chain: PluginChain, _ r: PluginRequest, upstreamStatus: Int = 200, upstreamHeaders: [(String, String)] = [("Content-Type", "text/plain")]
    ) -> Result {
        let run = PluginRun(request: r, route: chain, globals: [])
        var reply: PluginReply? = nil
        var delays: [UInt64] = []
        var waited = false
        loop: for _ in 0..<100 {
            switch run.advance() {
            case .done: break loop
            case .respond(let rep):
                reply = rep
                break loop
            case .delay(let n, let then):
                delays.append(n)
                if let then {
                    reply = then
                    break loop
                }
            case .wait:
                waited = true
                break loop
            }
        }
        var response = PluginResponse(status: reply?.status ?? upstreamStatus, headers: HTTPHeaders(reply?.headers ?? upstreamHeaders))
        run.headerFilters(&response)
        let body = response.bodyRewritten ? run.transformBody(reply?.body ?? Array("upstream".utf8)) : (reply?.body ?? Array("upstream".utf8))
        run.log(PluginLogInfo(
            status: response.status, upstreamStatus: reply == nil ? upstreamStatus : nil, latencyNanos: 1_000_000, upstreamLatencyNanos: 500_000,
            requestBytes: 100, responseBytes: body.count, node: "10.0.0.2:80"))
        return Result(reply: reply, response: response, body: body, delays: delays, waited: waited)
    }

    static func hasControl(_ s: String) -> Bool { s.utf8.contains { $0 < 0x20 || $0 == 0x7F } }

    static func allHeaderValuesClean(_ h: HTTPHeaders) -> Bool { h.allSatisfy { !hasControl($0.name) && !hasControl($0.value) } }

    // MARK: 1. The exclusivity violation

    /// The exact config of the report: rendering `$http_key` while `set` held `inout` on the
    /// same headers aborted the process on every request with a `key` header.
    @Test func proxyRewriteHeadersReadingTheHeadersTheySet() throws {
        let configs = try Self.validated(["proxy-rewrite": #"{"headers":{"x-api":"$remote_addr","name":"$arg_name","x-key":"$http_key"}}"#])
        let c = Self.chain(configs)
        let r = Self.request(query: "name=jack", headers: [("key", "k-123"), ("x-key", "from-client")])
        let out = Self.drive(c, r)
        #expect(out.reply == nil)
        #expect(r.headers["x-api"] == ["10.0.0.1"])
        #expect(r.headers["name"] == ["jack"])
        #expect(r.headers["x-key"] == ["k-123"])
        // A header set from itself reads the client's value, then replaces it.
        let self_ = Self.chain(try Self.validated(["proxy-rewrite": #"{"headers":{"set":{"x-key":"v=$http_x_key"},"add":{"x-more":"$http_x_key"}}}"#]))
        let r2 = Self.request(headers: [("x-key", "a")])
        Self.drive(self_, r2)
        #expect(r2.headers["x-key"] == ["v=a"])
        #expect(r2.headers["x-more"] == ["a"])
    }

    /// The same pattern in the response phase, in every plugin that renders templates into
    /// headers it is changing.
    @Test func responseSideTemplatesReadTheRequestWhileWritingTheResponse() throws {
        let configs = try Self.validated([
            "response-rewrite": #"{"headers":{"set":{"x-echo":"$http_key","x-status":"$status"},"add":["x-add: $http_key"]}}"#,
            "echo": #"{"before_body":"<","headers":{"x-echo-plugin":"1"}}"#,
            "fault-injection": #"{"abort":{"http_status":418,"headers":{"x-f":"$http_key"},"body":"$http_key"}}"#,
        ])
        let r = Self.request(headers: [("key", "k1")])
        let out = Self.drive(Self.chain(configs), r)
        #expect(out.reply?.status == 418)
        #expect(out.response.headers["x-f"] == ["k1"])
        #expect(out.response.headers["x-echo"] == ["k1"])
        #expect(out.response.headers["x-status"] == ["418"])
        #expect(out.response.headers["x-add"] == ["k1"])
        #expect(String(decoding: out.body, as: UTF8.self) == "<k1")
    }

    // MARK: 2. $arg_* is raw, and nothing with CR/LF/NUL is emitted

    @Test func argumentsAreRawAsInNGINX() {
        #expect(QueryArgument.raw("name", in: "name=%0D%0AX-Evil:%201") == "%0D%0AX-Evil:%201")
        #expect(QueryArgument.raw("name", in: "a=1&NAME=x+y&name=second") == "x+y")  // first, name without case
        #expect(QueryArgument.raw("name", in: "name&name=v") == "v")  // no '=': no value
        #expect(QueryArgument.raw("name", in: "name") == nil)
        #expect(QueryArgument.raw("name", in: "name=") == "")
        #expect(QueryArgument.raw("name", in: "xname=1&name=2") == "2")
        #expect(QueryArgument.raw("name", in: "na=1") == nil)
        #expect(QueryArgument.raw("name", in: nil) == nil)
        #expect(QueryArgument.raw("é", in: "%C3%A9=1&é=2") == "2")
        let r = Self.request(query: "q=%0D%0A")
        #expect(r.value(of: .arg("q")) == "%0D%0A")
        // vars use the same raw value (APISIX's ctx.var.arg_q).
        let expr = try? VarsExpression.parse(Self.json(#"[["arg_q","==","%0D%0A"]]"#), path: "")
        #expect(expr?.evaluate(r) == true)
    }

    static let injection = "name=%0D%0AX-Evil:%201%00"

    @Test func encodedCRLFInArgumentsStaysEncodedEverywhere() throws {
        // proxy-rewrite: headers and URI towards the upstream.
        let pr = Self.chain(try Self.validated(["proxy-rewrite": #"{"uri":"/u/$arg_name","headers":{"set":{"X-Name":"$arg_name"}}}"#]))
        let r = Self.request(query: Self.injection)
        let out = Self.drive(pr, r)
        #expect(out.reply == nil)
        #expect(r.headers["X-Name"] == ["%0D%0AX-Evil:%201%00"])
        #expect(r.headers["X-Evil"].isEmpty)
        #expect(r.path == "/u/%0D%0AX-Evil:%201%00")
        #expect(Self.allHeaderValuesClean(r.headers))
        // redirect: the Location towards the client.
        let rd = Self.chain(try Self.validated(["redirect": #"{"uri":"/to?n=$arg_name"}"#]))
        let red = Self.drive(rd, Self.request(query: Self.injection))
        #expect(red.reply?.status == 302)
        #expect(red.response.headers["Location"] == ["/to?n=%0D%0AX-Evil:%201%00"])
        #expect(red.response.headers["X-Evil"].isEmpty)
        // response-rewrite: headers towards the client.
        let rr = Self.chain(try Self.validated(["response-rewrite": #"{"headers":{"set":{"X-Name":"$arg_name"}}}"#]))
        let rro = Self.drive(rr, Self.request(query: Self.injection))
        #expect(rro.response.headers["X-Name"] == ["%0D%0AX-Evil:%201%00"])
        #expect(rro.response.headers["X-Evil"].isEmpty)
    }

    /// Values that do hold CR LF (a header value given to the plugins with one: NIO's parser
    /// refuses them from clients, so this is defence in depth) are never emitted.
    @Test func renderedControlCharactersAreNeverEmitted() throws {
        let evil = "a\r\nX-Evil: 1\0"
        // proxy-rewrite header: the request is refused with 400; nothing reaches the upstream.
        let pr = Self.chain(try Self.validated(["proxy-rewrite": #"{"headers":{"set":{"X-Out":"$http_x_in"}}}"#]))
        let r = Self.request(headers: [("x-in", evil)])
        let out = Self.drive(pr, r)
        #expect(out.reply?.status == 400)
        #expect(r.headers["X-Out"].isEmpty && r.headers["X-Evil"].isEmpty)
        #expect(Self.allHeaderValuesClean(out.response.headers))
        // proxy-rewrite URI: percent-encoded, one line.
        let pu = Self.chain(try Self.validated(["proxy-rewrite": #"{"uri":"/x?v=$http_x_in"}"#]))
        let ru = Self.request(headers: [("x-in", evil)])
        #expect(Self.drive(pu, ru).reply == nil)
        #expect(ru.path == "/x" && ru.query == "v=a%0D%0AX-Evil:%201%00")
        // redirect: the Location is encoded.
        let rd = Self.chain(try Self.validated(["redirect": #"{"uri":"/to/$http_x_in"}"#]))
        let red = Self.drive(rd, Self.request(headers: [("x-in", evil)]))
        #expect(red.response.headers["Location"] == ["/to/a%0D%0AX-Evil:%201%00"])
        // response-rewrite: a `set` of an unsafe value removes the header (the upstream's
        // included), an `add` of one is left out; the rest of the response goes on.
        let rr = Self.chain(try Self.validated(["response-rewrite": #"{"headers":{"set":{"X-Out":"$http_x_in","X-Ok":"1"},"add":["X-Added: $http_x_in"]}}"#]))
        let rro = Self.drive(rr, Self.request(headers: [("x-in", evil)]), upstreamHeaders: [("X-Out", "upstream"), ("Content-Type", "text/plain")])
        #expect(rro.response.headers["X-Out"].isEmpty && rro.response.headers["X-Added"].isEmpty)
        #expect(rro.response.headers["X-Ok"] == ["1"])
        #expect(Self.allHeaderValuesClean(rro.response.headers))
        // fault-injection's abort headers: left out.
        let fi = Self.chain(try Self.validated(["fault-injection": #"{"abort":{"http_status":403,"headers":{"X-F":"$http_x_in","X-G":"ok"}}}"#]))
        let fio = Self.drive(fi, Self.request(headers: [("x-in", evil)]))
        #expect(fio.reply?.status == 403 && fio.response.headers["X-F"].isEmpty && fio.response.headers["X-G"] == ["ok"])
    }

    // MARK: 3. Header text in configs is refused at validation

    static let badHeaderConfigs: [(String, JSONValue, String)] = [
        ("echo", ["body": "x", "headers": ["X-A": "a\r\n\u{0}"]], "plugins.echo.headers.X-A"),
        ("echo", ["body": "x", "headers": ["X A": "v"]], "plugins.echo.headers.X A"),
        ("proxy-rewrite", ["headers": ["set": ["X-A": "a\r\nb"]]], "plugins.proxy-rewrite.headers.set.X-A"),
        ("proxy-rewrite", ["headers": ["add": ["X-A": "a\nb"]]], "plugins.proxy-rewrite.headers.add.X-A"),
        ("proxy-rewrite", ["headers": ["X-A": "a\u{0}b"]], "plugins.proxy-rewrite.headers.X-A"),
        ("proxy-rewrite", ["headers": ["set": ["X\r\nA": "v"]]], "plugins.proxy-rewrite.headers.set.X\r\nA"),
        ("proxy-rewrite", ["uri": "/a\r\nb"], "plugins.proxy-rewrite.uri"),
        ("proxy-rewrite", ["regex_uri": ["^/a", "/b\r\n"]], "plugins.proxy-rewrite.regex_uri[1]"),
        ("response-rewrite", ["headers": ["add": ["X-A: b\r\nc"]]], "plugins.response-rewrite.headers.add[0]"),
        ("response-rewrite", ["headers": ["add": ["X A: b"]]], "plugins.response-rewrite.headers.add[0]"),
        ("response-rewrite", ["headers": ["set": ["X-A": "\u{7F}"]]], "plugins.response-rewrite.headers.set.X-A"),
        ("response-rewrite", ["headers": ["remove": ["X\nA"]]], "plugins.response-rewrite.headers.remove[0]"),
        ("mocking", ["response_example": "x", "response_headers": ["X-A": "1\r\n2"]], "plugins.mocking.response_headers.X-A"),
        ("mocking", ["response_example": "x", "content_type": "text/plain\r\nX: 1"], "plugins.mocking.content_type"),
        ("fault-injection", ["abort": ["http_status": 403, "headers": ["X-A": "\r\n"]]], "plugins.fault-injection.abort.headers.X-A"),
        ("api-breaker", ["break_response_code": 502, "break_response_headers": [["key": "X-A", "value": "a\r\nb"]]],
         "plugins.api-breaker.break_response_headers[0].value"),
        ("api-breaker", ["break_response_code": 502, "break_response_headers": [["key": "X:A", "value": "b"]]],
         "plugins.api-breaker.break_response_headers[0].key"),
        ("cors", ["allow_headers": "a\r\nb"], "plugins.cors.allow_headers"),
        ("key-auth", ["realm": "r\r\n"], "plugins.key-auth.realm"),
        ("basic-auth", ["realm": "r\u{0}"], "plugins.basic-auth.realm"),
        ("jwt-auth", ["realm": "\n"], "plugins.jwt-auth.realm"),
        ("request-id", ["header_name": "X Id"], "plugins.request-id.header_name"),
        ("request-id", ["algorithm": "range_id", "range_id": ["char_set": "abcdef\r\n"]], "plugins.request-id.range_id.char_set"),
        ("redirect", ["uri": "/a\r\nb"], "plugins.redirect.uri"),
    ]

    @Test(arguments: badHeaderConfigs)
    func headerTextWithControlsIsRefused(plugin: String, config: JSONValue, path: String) {
        do throws(ConfigError) {
            let out = try PluginCatalog.validate(plugin, config, path: "plugins.\(plugin)")
            Issue.record("accepted \(out)")
        } catch {
            // A path that quotes a key with control characters shows them escaped.
            #expect(error.path == path.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n"), "\(error)")
        }
    }

    @Test func consumerLabelsThatBecomeHeadersAreChecked() {
        do throws(ConfigError) {
            _ = try Consumer.decode(["username": "jack", "labels": ["custom_id": "a\r\nX-Evil: 1"]], path: "")
            Issue.record("accepted")
        } catch {
            #expect(error.path == "labels.custom_id")
        }
    }

    /// An echo config with CR LF and NUL once left the request unanswered; even one that
    /// bypassed validation now sends the body without the header.
    @Test func echoWithUnsafeHeadersStillAnswers() {
        let c = Self.chain(["echo": ["body": "hi", "headers": ["X-A": "a\r\n\u{0}", "X-B": "b"]]])
        let out = Self.drive(c, Self.request())
        #expect(String(decoding: out.body, as: UTF8.self) == "hi")
        #expect(out.response.headers["X-A"].isEmpty && out.response.headers["X-B"] == ["b"])
    }

    @Test func nonFiniteNumbersAreRefusedByName() {
        for bad in [Double.nan, .infinity, -.infinity] {
            do throws(ConfigError) {
                _ = try PluginCatalog.validate("limit-req", ["rate": .double(bad), "burst": 1, "key": "remote_addr"], path: "plugins.limit-req")
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.path == "plugins.limit-req.rate", "\(error)")
            }
            do throws(ConfigError) {
                _ = try PluginCatalog.validate("mocking", ["response_example": "x", "response_schema": ["example": .double(bad)]], path: "plugins.mocking")
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.path == "plugins.mocking.response_schema.example", "\(error)")
            }
        }
    }

    // MARK: 3b. Every number of every plugin, at the extremes

    enum Step: Hashable {
        case key(String)
        case index
        case anyKey
    }

    /// Every integer or number field reachable in `schema`, with the path to it.
    static func numericFields(_ schema: Schema, _ prefix: [Step] = []) -> [[Step]] {
        switch schema {
        case .integer, .number: return [prefix]
        case .object(let o): return o.properties.flatMap { numericFields($0.schema, prefix + [.key($0.name)]) }
        case .array(let items, _): return numericFields(items, prefix + [.index])
        case .map(let values, _, _): return numericFields(values, prefix + [.anyKey])
        case .anyOf(let options):
            var seen = Set<[Step]>()
            return options.flatMap { numericFields($0, prefix) }.filter { seen.insert($0).inserted }
        case .string, .boolean, .any: return []
        }
    }

    static func text(_ steps: [Step], base: String) -> String {
        var out = base
        for s in steps {
            switch s {
            case .key(let k): out = FieldPath.join(out, k)
            case .index: out += "[0]"
            case .anyKey: out = FieldPath.join(out, "X-Test")
            }
        }
        return out
    }

    /// `base` with `value` at `steps`, creating what is missing.
    static func setting(_ base: JSONValue?, _ steps: ArraySlice<Step>, _ value: JSONValue) -> JSONValue {
        guard let step = steps.first else { return value }
        let rest = steps.dropFirst()
        switch step {
        case .key(let k):
            var o = base?.objectValue ?? [:]
            o[k] = setting(o[k], rest, value)
            return .object(o)
        case .anyKey:
            var o = base?.objectValue ?? [:]
            o["X-Test"] = setting(o["X-Test"], rest, value)
            return .object(o)
        case .index:
            var a = base?.arrayValue ?? []
            if a.isEmpty { a.append(setting(nil, rest, value)) } else { a[0] = setting(a[0], rest, value) }
            return .array(a)
        }
    }

    /// Whether `config` already holds the object that contains the field at `steps`.
    static func holdsParent(_ config: JSONValue, _ steps: [Step]) -> Bool {
        var v: JSONValue? = config
        for s in steps.dropLast() {
            switch s {
            case .key(let k): v = v?[k]
            case .index: v = v?.arrayValue?.first
            case .anyKey: v = v?.objectValue?.values.first
            }
            if v == nil { return false }
        }
        return true
    }

    static let extremes: [JSONValue] = [
        0, -1, 2_147_483_647, 2_147_483_648, 9_007_199_254_740_992, .int(Int64.max), .double(9_223_372_036_854_775_808.0),
        .double(18_446_744_073_709_551_616.0), .double(1e19), .double(1e308), .double(-1e308), .double(1e-9), .double(.nan), .double(.infinity),
    ]

    /// The valid configs of the schema tests, by plugin (the route's and the consumer's).
    static func bases(_ plugin: String, consumer: Bool) -> [JSONValue] {
        let list = consumer ? PluginSchemaTests.consumerValid : PluginSchemaTests.valid
        return list.filter { $0.0 == plugin }.map { json($0.1) }
    }

    /// For every numeric field of every plugin (and `_meta`, and consumer credentials), each
    /// extreme value either validates or is refused with an error naming that field; a config
    /// that validates compiles and runs every phase without trapping, its delays within a
    /// day and its statuses valid.
    @Test(arguments: PluginCatalog.all.keys.sorted())
    func everyNumberAtTheExtremes(plugin: String) throws {
        let spec = try #require(PluginCatalog.all[plugin])
        var schemas: [(Schema, Bool)] = [(spec.schema, false), (PluginCatalog.meta, false)]
        if let c = spec.consumerSchema { schemas.append((c, true)) }
        var checked = 0
        for (index, (schema, consumer)) in schemas.enumerated() {
            let isMeta = index == 1
            let bases = Self.bases(plugin, consumer: consumer)
            #expect(!bases.isEmpty, "\(plugin) has no valid config to start from")
            for field in Self.numericFields(schema) {
                let steps = isMeta ? [.key("_meta")] + field : field
                let name = Self.text(steps, base: "plugins.\(plugin)")
                let base = bases.first { Self.holdsParent($0, steps) } ?? bases[0]
                for value in Self.extremes {
                    checked += 1
                    let config = Self.setting(base, steps[...], value)
                    let accepted: JSONValue
                    do throws(ConfigError) {
                        accepted = try PluginCatalog.validate(plugin, config, path: "plugins.\(plugin)", consumer: consumer)
                    } catch {
                        #expect(error.path == name, "\(name) = \(value): refused for \(error)")
                        continue
                    }
                    if case .double(let d) = value { #expect(d.isFinite, "\(name) accepted \(d)") }
                    Self.run(plugin, accepted, consumer: consumer, label: "\(name) = \(value)")
                }
            }
        }
        #expect(checked > 0 || plugin == "prometheus")
    }

    /// The runtime on configs that never went through validation (another tool wrote the
    /// store, an older build stored them): every numeric field at every extreme, compiled and
    /// run; the plugins clamp to the schema's ranges.
    @Test(arguments: PluginCatalog.all.keys.sorted())
    func unvalidatedExtremesDoNotTrap(plugin: String) throws {
        let spec = try #require(PluginCatalog.all[plugin])
        for (schema, consumer) in [(spec.schema, false)] + (spec.consumerSchema.map { [($0, true)] } ?? []) {
            let bases = Self.bases(plugin, consumer: consumer)
            for field in Self.numericFields(schema) {
                let base = bases.first { Self.holdsParent($0, field) } ?? bases.first ?? [:]
                for value in Self.extremes {
                    Self.run(plugin, Self.setting(base, field[...], value), consumer: consumer, label: "\(Self.text(field, base: plugin)) = \(value)")
                }
            }
        }
    }

    static func run(_ plugin: String, _ config: JSONValue, consumer: Bool, label: String) {
        let state = PluginStateStore()
        if consumer {
            // Through the runtime's own reader, as a stored consumer would be, but unvalidated.
            guard let consumer = try? Consumer.decode(["username": "jack"], path: "") else {
                Issue.record("consumer")
                return
            }
            var withPlugin = consumer
            withPlugin.plugins = [plugin: config]
            let compiled = PluginFactory.compileConsumer(withPlugin, state: state)
            let r = request(headers: [("authorization", "Bearer a.b.c"), ("apikey", "k")])
            r.consumers = ConsumerIndex([compiled])
            drive(chain([plugin: [:]], state: state), r)
            return
        }
        // A Redis policy would connect; its numbers are read (and clamped) when compiling.
        let c = chain([plugin: config], state: state, metrics: HTTPMetrics())
        if config["policy"] == "redis" { return }
        for upstreamStatus in [500, 500, 500, 200] {
            let out = drive(c, request(query: "name=x", headers: [("key", "k"), ("origin", "https://a.example.com")]), upstreamStatus: upstreamStatus)
            for d in out.delays { #expect(d <= PluginLimits.maxDelayNanos, "\(label): delay \(d)") }
            #expect((100...599).contains(out.response.status), "\(label): status \(out.response.status)")
            #expect(allHeaderValuesClean(out.response.headers), "\(label)")
        }
    }

    // MARK: 3c. The reported traps, one by one

    /// conn and burst both 2^63-1 (stored by another tool; the schema now stops at 2^31-1):
    /// `conn + burst` trapped on the first request.
    @Test func limitConnWithHugeConnAndBurst() {
        let c = Self.chain(["limit-conn": ["conn": .int(Int64.max), "burst": .int(Int64.max), "default_conn_delay": .double(1e308), "key": "remote_addr"]])
        let out = Self.drive(c, Self.request())
        #expect(out.reply == nil)
        do throws(ConfigError) {
            _ = try PluginCatalog.validate(
                "limit-conn", ["conn": .int(Int64.max), "burst": 0, "default_conn_delay": 1, "key": "remote_addr"], path: "plugins.limit-conn")
            Issue.record("accepted")
        } catch {
            #expect(error.path == "plugins.limit-conn.conn" && error.message.contains("<= 2147483647"))
        }
    }

    /// The breaker's period was computed as 2^times seconds in nanoseconds before the clamp:
    /// past 2^34 s the product overflowed, after about a hundred failures.
    @Test func apiBreakerManyFailures() throws {
        let year = UInt64(PluginLimits.maxWindowSeconds)
        #expect(APIBreakerPlugin.breakNanos(unhealthy: Int.max, failures: 1, maxSeconds: year) == year * 1_000_000_000)
        #expect(APIBreakerPlugin.breakNanos(unhealthy: 3, failures: 3, maxSeconds: 300) == 2_000_000_000)
        #expect(APIBreakerPlugin.breakNanos(unhealthy: 6, failures: 3, maxSeconds: 300) == 4_000_000_000)
        #expect(APIBreakerPlugin.breakNanos(unhealthy: 90, failures: 3, maxSeconds: 300) == 300_000_000_000)
        let c = Self.chain(try Self.validated([
            "api-breaker": #"{"break_response_code":503,"max_breaker_sec":31536000,"unhealthy":{"failures":1}}"#,
        ]))
        for _ in 0..<200 {
            let r = Self.request()
            let run = PluginRun(request: r, route: c, globals: [])
            _ = run.advance()
            run.log(PluginLogInfo(status: 500, upstreamStatus: 500, latencyNanos: 1, upstreamLatencyNanos: 1, requestBytes: 0, responseBytes: 0, node: nil))
        }
        #expect(Self.drive(c, Self.request()).reply?.status == 503)
    }

    @Test func apiBreakerEntriesExpire() throws {
        let p = APIBreakerPlugin(Self.json(#"{"break_response_code":503,"max_breaker_sec":3}"#), PluginCompileContext(owner: "r", state: PluginStateStore()))
        let fresh = APIBreakerPlugin.Health(unhealthy: 1, healthy: 0, openedAt: nil, updatedAt: 1_000)
        #expect(!p.expired(fresh, 1_000 + 2_000_000_000))
        #expect(p.expired(fresh, 1_000 + 3_000_000_001))
        // An entry that counted failures but never opened used to stay forever.
        #expect(p.expired(APIBreakerPlugin.Health(unhealthy: 2, healthy: 0, openedAt: nil, updatedAt: 0), 10_000_000_000))
    }

    @Test func durationsSaturate() {
        #expect(Nanos.from(seconds: 1e308) == PluginLimits.maxDelayNanos)
        #expect(Nanos.from(seconds: 1e308, limit: .max) == .max)
        #expect(Nanos.from(seconds: .nan) == 0 && Nanos.from(seconds: -1) == 0 && Nanos.from(seconds: .infinity, limit: .max) == .max)
        #expect(Nanos.from(seconds: 0.5) == 500_000_000)
        #expect(Nanos.from(seconds: Int.max) == .max && Nanos.from(seconds: -5) == 0 && Nanos.from(seconds: 2) == 2_000_000_000)
        #expect(Nanos.add(.max, 1) == .max && Nanos.elapsed(from: 5, to: 3) == 0)
        // fault-injection's duration and mocking's delay, unvalidated: at most a day.
        let fi = Self.drive(Self.chain(["fault-injection": ["delay": ["duration": .double(1e308)]]]), Self.request())
        #expect(fi.delays == [PluginLimits.maxDelayNanos])
        let mock = Self.drive(Self.chain(["mocking": ["delay": .int(Int64.max), "response_example": "x"]]), Self.request())
        #expect(mock.delays == [PluginLimits.maxDelayNanos] && mock.reply?.status == 200)
        // limit-req at the smallest positive rate: the wait saturates, the bucket too.
        let lr = Self.chain(["limit-req": ["rate": .double(Double.leastNonzeroMagnitude), "burst": .double(1e9), "key": "remote_addr"]])
        Self.drive(lr, Self.request())
        let second = Self.drive(lr, Self.request())
        #expect(second.delays.allSatisfy { $0 <= PluginLimits.maxDelayNanos })
    }

    @Test func limitCountHugeWindow() {
        let counters = FixedWindowCounters(windowSeconds: Int.max)
        #expect(counters.windowNanos == .max)
        let now: UInt64 = 1 << 62
        let first = counters.take("k", limit: 2, now: now)
        #expect(first.allowed && first.remaining == 1 && first.reset > 0)
        let c = Self.chain(["limit-count": ["count": .int(Int64.max), "time_window": .int(Int64.max)]])
        let out = Self.drive(c, Self.request())
        #expect(out.reply == nil)
    }

    @Test func requestIDLengthIsBounded() throws {
        let c = Self.chain(["request-id": ["algorithm": "range_id", "range_id": ["length": 2_147_483_647, "char_set": "ab\r\n\u{0}"]]])
        let r = Self.request()
        Self.drive(c, r)
        let id = try #require(r.headers.first(name: "X-Request-Id"))
        #expect(id.count == PluginLimits.rangeIDLength.upperBound)
        #expect(!Self.hasControl(id))
        do throws(ConfigError) {
            _ = try PluginCatalog.validate("request-id", ["algorithm": "range_id", "range_id": ["length": 2_147_483_647]], path: "plugins.request-id")
            Issue.record("accepted")
        } catch {
            #expect(error.path == "plugins.request-id.range_id.length" && error.message == "must be <= 128")
        }
    }

    @Test func statusesAreAlwaysValid() {
        let mock = Self.drive(Self.chain(["mocking": ["response_status": -5, "response_example": "x"]]), Self.request())
        #expect(mock.reply?.status == 200)
        let fi = Self.drive(Self.chain(["fault-injection": ["abort": ["http_status": .int(Int64.min)]]]), Self.request())
        #expect(fi.reply?.status == 500)
        let rr = Self.drive(Self.chain(["response-rewrite": ["status_code": 99999]]), Self.request())
        #expect(rr.response.status == 200)
        let rd = Self.drive(Self.chain(["redirect": ["uri": "/x", "ret_code": .int(Int64.max)]]), Self.request())
        #expect(rd.reply?.status == 302)
    }

    @Test func mockingSchemaBombIsBounded() {
        // Arrays of objects of arrays...: 100 properties a level, 8 levels deep.
        var schema: JSONValue = ["type": "string"]
        for _ in 0..<4 {
            var props: [String: JSONValue] = [:]
            for i in 0..<100 { props["p\(i)"] = ["type": "array", "items": schema] }
            schema = ["type": "object", "properties": .object(props)]
        }
        let out = Self.drive(Self.chain(["mocking": ["response_schema": schema]]), Self.request())
        #expect(out.reply?.status == 200)
        #expect(out.body.count < 1_000_000)
    }

    // MARK: traffic-split

    @Test func trafficSplitHugeWeights() {
        let ups: [JSONValue] = (0..<20).map { i in ["upstream_id": .string("u\(i)"), "weight": .int(Int64.max)] }
        let c = Self.chain(["traffic-split": ["rules": [["weighted_upstreams": .array(ups)]]]])
        let r = Self.request()
        Self.drive(c, r)
        #expect(r.upstreamOverride?.hasPrefix("upstreams/u") == true)
    }

    @Test func weightedPickerIsExactAndSpread() {
        // A small total: NGINX's smooth weighted round robin.
        let swrr = WeightedPicker([("a", 5), ("b", 1), ("c", 1)])
        #expect((0..<7).map { swrr.pick($0) ?? "-" } == ["a", "a", "b", "a", "c", "a", "a"])
        // A large one: exact shares over a period, interleaved.
        let big = WeightedPicker([("a", 4001), ("b", 2000), (nil, 3)])
        guard case .cumulative(_, _, let total, _) = big.plan else {
            Issue.record("expected the cumulative plan")
            return
        }
        var counts: [String: Int] = [:]
        var run = 0
        var longest = 0
        var previous: String? = nil
        for n in 0..<total {
            let t = big.pick(n) ?? "route"
            counts[t, default: 0] += 1
            run = t == previous ? run + 1 : 1
            previous = t
            if t == "b" { longest = max(longest, run) }
        }
        #expect(counts == ["a": 4001, "b": 2000, "route": 3])
        #expect(longest <= 3)
        // Weights at 2^31-1 and a counter near the top: no overflow.
        let top = WeightedPicker((0..<20).map { ("u\($0)", UInt64(Int32.max)) } + [("x", 1)])
        #expect(top.pick(.max) != nil)
        #expect(WeightedPicker([]).pick(.max) == nil)
    }

    // MARK: 4. Bounded tables

    @Test func shardedTableEvictsLeastRecentlyUsed() {
        let before = PluginTableStats.evictions("limit-count")
        let table = ShardedTable<Int>(shards: 4, capacity: 400, plugin: "limit-count")
        for i in 0..<20_000 {
            table.update("client-\(i)", now: 0, isExpired: { _, _ in false }) { $0 = i }
            // A key in use all along survives.
            table.update("hot", now: 0, isExpired: { _, _ in false }) { v in v = (v ?? 0) + 1 }
        }
        #expect(table.count <= 400)
        let hot = table.update("hot", now: 0, isExpired: { _, _ in false }) { $0 }
        #expect(hot == 20_000)
        #expect(PluginTableStats.evictions("limit-count") - before >= 19_000)
        // Expired entries go before live ones.
        let t2 = ShardedTable<UInt64>(shards: 1, capacity: 10, plugin: nil)
        for i in 0..<10 { t2.update("old-\(i)", now: 0, isExpired: { end, now in now >= end }) { $0 = UInt64(i < 5 ? 1 : 100) } }
        t2.update("new", now: 50, isExpired: { end, now in now >= end }) { $0 = 100 }
        #expect(t2.count == 6)
        #expect(t2.update("old-9", now: 50, isExpired: { end, now in now >= end }) { $0 } == 100)
    }

    @Test func limitConnRefusesNewKeysWhenFull() {
        let before = PluginTableStats.refusals("limit-conn")
        let table = ShardedTable<Int>(shards: 1, capacity: 3, plugin: "limit-conn")
        for k in ["a", "b", "c"] { #expect(table.updateUnlessFull(k, now: 0, isExpired: { n, _ in n <= 0 }) { $0 = 1 } != nil) }
        #expect(table.updateUnlessFull("d", now: 0, isExpired: { n, _ in n <= 0 }) { $0 = 1 } == nil)
        #expect(table.updateUnlessFull("a", now: 0, isExpired: { n, _ in n <= 0 }) { v in v = (v ?? 0) + 1 } != nil)  // known keys go on
        #expect(PluginTableStats.refusals("limit-conn") == before + 1)
        #expect(table.count == 3)
    }

    @Test func limitTablesAreCappedPerConfig() {
        let state = PluginStateStore()
        let c = Self.chain(["limit-count": ["count": 5, "time_window": 60, "key": "http_x_user"]], state: state)
        for i in 0..<2_000 { Self.drive(c, Self.request(headers: [("x-user", "u\(i)")])) }
        guard let plugin = c.entries.first?.plugin as? LimitCountPlugin, let counters = plugin.counters else {
            Issue.record("no local counters")
            return
        }
        #expect(counters.table.count == 2_000)
        #expect(counters.table.shardCapacity * 16 <= PluginTableLimits.limitCount)
        // A 32 KiB key is stored by its digest.
        let long = String(repeating: "x", count: 32_768)
        #expect(TableKey.bounded(long).utf8.count < 100 && TableKey.bounded(long) != TableKey.bounded(long + "y"))
        #expect(TableKey.bounded("10.0.0.1") == "10.0.0.1")
    }

    @Test func metricsSeriesAreBounded() {
        let before = PluginTableStats.evictions("prometheus")
        let metrics = HTTPMetrics(maxSeries: 16)
        let c = Self.chain(["prometheus": [:]], metrics: metrics)
        let hot = PluginLogInfo(status: 200, upstreamStatus: 200, latencyNanos: 1, upstreamLatencyNanos: 1, requestBytes: -5, responseBytes: 1, node: "hot:80")
        for i in 0..<500 {
            // Every request from a different upstream node (pods come and go).
            let run = PluginRun(request: Self.request(), route: c, globals: [])
            _ = run.advance()
            run.log(PluginLogInfo(status: 200, upstreamStatus: 200, latencyNanos: 1, upstreamLatencyNanos: 1, requestBytes: 1, responseBytes: 1, node: "10.1.\(i / 256).\(i % 256):80"))
            let again = PluginRun(request: Self.request(), route: c, globals: [])
            _ = again.advance()
            again.log(hot)
        }
        #expect(metrics.seriesCount <= 16)
        // Per series: 3 counters and 3 histograms, none shared here.
        #expect(metrics.registeredMetrics <= 16 * 6)
        let text = metrics.text()
        #expect(text.components(separatedBy: "apisix_http_status{").count - 1 <= 16)
        #expect(text.contains("node=\"hot:80\""))
        #expect(PluginTableStats.evictions("prometheus") > before)
        #expect(text.contains("sluice_plugin_table_evictions_total{plugin=\"prometheus\"}"))
        #expect(text.contains("sluice_plugin_table_full_rejections_total{plugin=\"limit-conn\"}"))
    }

    // MARK: 5. Redis replies

    @Test func hostileRedisRepliesAreErrorsNotTraps() throws {
        func parse(_ s: String) throws -> RESPValue? {
            var b = ByteBuffer(string: s)
            return try RESPDecoder.parse(&b)
        }
        #expect(throws: RedisError.self) { try parse("$9223372036854775807\r\n") }
        #expect(throws: RedisError.self) { try parse("*9223372036854775807\r\n") }
        #expect(throws: RedisError.self) { try parse(String(repeating: "*1\r\n", count: 100) + ":1\r\n") }
        #expect(throws: RedisError.self) { try parse("+" + String(repeating: "a", count: 70_000)) }
        #expect(throws: RedisError.self) { try parse("\u{1}x\r\n") }
        #expect(try parse("*2\r\n:1\r\n$2\r\nab\r\n") == .array([.integer(1), .bulk(Array("ab".utf8))]))
        #expect(try parse("$5\r\nab") == nil)  // waits for more
    }
}
