import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceEtcd
import SluiceTesting
import Testing

/// Property tests over the real `sluice serve` process: every numeric field of every object
/// and plugin, found by walking the JSON Schemas the Admin API serves, is written at the
/// extremes, and every string field with hostile values. Each write answers 2xx, or 400
/// naming the field; the process stays alive; a request through each accepted route gets an
/// answer; and a restart on the resulting data dir starts and serves.
@Suite(.serialized) struct HostileConfigTests {
    /// JSON number literals written as they are (some do not fit an Int64 or a Double exactly).
    static let extremeNumbers = [
        "0", "-1", "2147483647", "2147483648", "9007199254740992", "9223372036854775807", "9223372036854775808",
        "18446744073709551616", "1e19", "1e308", "-1e308", "1e-9",
    ]
    /// JSON string contents written as they are (escapes included), and raw invalid UTF-8.
    static let hostileStrings: [[UInt8]] = [
        Array(#"a\r\nX-Injected: 1"#.utf8), Array(#"a\u0000b"#.utf8), Array(String(repeating: "a", count: 65_536).utf8),
        [0x61, 0xFF, 0xFE, 0x62], Array("(a+)+$".utf8), Array("$arg_x$http_key".utf8),
    ]

    /// A minimal valid config of each plugin, with every optional object present, so that a
    /// field set on its own is judged on its own value.
    static let pluginBases: [String: String] = [
        "real-ip": #"{"source":"http_x_real_ip","trusted_addresses":["127.0.0.1"]}"#,
        "client-control": #"{"max_body_size":1048576}"#,
        "request-id": #"{"algorithm":"range_id","range_id":{"length":16,"char_set":"abcdefghijk"}}"#,
        "fault-injection": #"{"abort":{"http_status":200,"body":"x","percentage":0},"delay":{"duration":0,"percentage":0}}"#,
        "mocking": #"{"response_example":"ok","delay":0}"#,
        "cors": #"{"max_age":5}"#,
        "ip-restriction": #"{"whitelist":["0.0.0.0/0","::/0"]}"#,
        "uri-blocker": #"{"block_rules":["^/never-x$"]}"#,
        "basic-auth": #"{}"#,
        "jwt-auth": #"{}"#,
        "key-auth": #"{}"#,
        "consumer-restriction": #"{"whitelist":["nobody"],"allowed_by_methods":[{"user":"nobody","methods":["GET"]}]}"#,
        "proxy-rewrite": #"{"uri":"/get","headers":{"set":{"x-a":"1"},"add":{"x-b":"2"},"remove":["x-c"]}}"#,
        "api-breaker": #"{"break_response_code":502,"break_response_headers":[{"key":"x-b","value":"1"}],"unhealthy":{"http_statuses":[500],"failures":3},"healthy":{"http_statuses":[200],"successes":3}}"#,
        "limit-conn": #"{"conn":1000,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}"#,
        "limit-count": #"{"count":1000,"time_window":60,"key":"remote_addr"}"#,
        "limit-req": #"{"rate":1000,"burst":0,"key":"remote_addr"}"#,
        "traffic-split": #"{"rules":[{"match":[{"vars":[["arg_x","==","1"]]}],"weighted_upstreams":[{"weight":1}]}]}"#,
        "redirect": #"{"uri":"/elsewhere"}"#,
        "response-rewrite": #"{"headers":{"set":{"x-a":"1"}},"filters":[{"regex":"x","replace":"y"}]}"#,
        "prometheus": #"{}"#,
        "echo": #"{"body":"x","headers":{"x-a":"1"}}"#,
    ]

    enum Step: Hashable { case key(String), index }

    struct Slot {
        var path: [Step]
        var numeric: Bool
        /// The name an error must mention: the innermost key of the path.
        var leaf: String { path.reversed().compactMap { if case .key(let k) = $0 { return k } else { return nil } }.first ?? "" }
        var text: String { path.map { if case .key(let k) = $0 { return ".\(k)" } else { return "[0]" } }.joined() }
    }

    /// Numeric and string fields of a JSON Schema document (maps with free keys are skipped:
    /// their keys are the user's, and hand cases cover them).
    static func slots(_ schema: JSONValue, _ path: [Step] = [], skipping: Set<String> = []) -> [Slot] {
        var out: [Slot] = []
        if case .object(let props)? = schema["properties"] {
            for (k, sub) in props.sorted(by: { $0.key < $1.key }) where !skipping.contains(k) {
                out += slots(sub, path + [.key(k)])
            }
        }
        if let items = schema["items"] { out += slots(items, path + [.index]) }
        if case .array(let options)? = schema["anyOf"] {
            var scalarSeen = Set<Bool>()
            for o in options {
                if o["properties"] != nil { out += slots(o, path) }
                if let t = o["type"]?.stringValue, ["integer", "number", "string"].contains(t), o["enum"] == nil {
                    let numeric = t != "string"
                    if scalarSeen.insert(numeric).inserted { out.append(Slot(path: path, numeric: numeric)) }
                }
            }
        }
        if schema["enum"] == nil, let t = schema["type"]?.stringValue, ["integer", "number", "string"].contains(t), !path.isEmpty {
            out.append(Slot(path: path, numeric: t != "string"))
        }
        return out
    }

    static let placeholder = "@@SLUICE-HOSTILE@@"

    /// `base` with the field at `path` set to the placeholder (containers created as needed).
    /// `base` with `json` at `path`.
    static func setting(_ base: JSONValue, _ path: ArraySlice<Step>, _ json: String) -> JSONValue {
        guard let step = path.first, case .key(let k) = step else { return (try? JSONValue.parse(json)) ?? .null }
        var o = base.objectValue ?? [:]
        o[k] = setting(o[k] ?? .null, path.dropFirst(), json)
        return .object(o)
    }

    static func setting(_ base: JSONValue, _ path: ArraySlice<Step>) -> JSONValue {
        guard let step = path.first else { return .string(placeholder) }
        switch step {
        case .key(let k):
            var o = base.objectValue ?? [:]
            o[k] = setting(o[k] ?? .null, path.dropFirst())
            return .object(o)
        case .index:
            var a = base.arrayValue ?? []
            if a.isEmpty { a = [.null] }
            a[0] = setting(a[0], path.dropFirst())
            return .array(a)
        }
    }

    /// The body with the quoted placeholder replaced by `raw` (a number literal, or string
    /// contents between quotes).
    static func body(_ value: JSONValue, raw: [UInt8], quoted: Bool) -> [UInt8] {
        let text = value.serializedBytes()
        let needle = Array("\"\(placeholder)\"".utf8)
        guard let i = text.firstRange(of: needle) else { return text }
        return Array(text[..<i.lowerBound]) + (quoted ? [0x22] + raw + [0x22] : raw) + Array(text[i.upperBound...])
    }

    struct Write {
        var resource: String  // "/routes/fz-12"
        /// Where the object lives in the store (`/routes/fz-12`, `/consumers/fz_3`).
        var key: String
        var body: [UInt8]
        var slot: String
        var leaf: String
        var value: String
        /// The request path that reaches the object, when it is a route.
        var requestPath: String?
        /// The field delays the answer by design (a configured delay may be long).
        var delays: Bool
    }

    /// Every write of the property test, for a gateway whose upstream is `upstream`.
    static func writes(admin: AdminClient, upstream: String) async throws -> [Write] {
        var out: [Write] = []
        var n = 0
        func add(_ resource: String, _ base: JSONValue, _ slot: Slot, routePath: String?) {
            let values: [([UInt8], Bool, String)] =
                slot.numeric
                ? extremeNumbers.map { (Array($0.utf8), false, $0) }
                : hostileStrings.map { ($0, true, String(decoding: $0.prefix(24), as: UTF8.self)) }
            for (raw, quoted, shown) in values {
                n += 1
                let id = "fz-\(n)"
                // Passive checks need active ones (slow, so the walk's upstreams are barely probed).
                let needsActive = slot.path.contains(.key("checks")) && !slot.path.contains(.key("active"))
                let checksAt = slot.path.firstIndex(of: .key("checks")) ?? 0
                let activePath = Array(slot.path[...checksAt]) + [.key("active")]
                let start = needsActive ? setting(base, activePath[...], #"{"type":"tcp","healthy":{"interval":3600},"unhealthy":{"interval":3600}}"#) : base
                var obj = setting(start, slot.path[...])
                if resource == "routes", case .object(var o) = obj {
                    o["uri"] = o["uri"] == .string(placeholder) ? o["uri"] : .string("/fz/\(id)/*")
                    obj = .object(o)
                }
                if resource == "consumers", case .object(var o) = obj, o["username"] != .string(placeholder) {
                    o["username"] = .string(id.replacingOccurrences(of: "-", with: "_"))
                    // Each consumer its own credential: two may not share one (as in APISIX).
                    if case .object(var plugins)? = o["plugins"] {
                        for (plugin, field) in [("key-auth", "key"), ("basic-auth", "username"), ("jwt-auth", "key")] {
                            guard case .object(var c)? = plugins[plugin], let v = c[field], v != .string(placeholder) else { continue }
                            c[field] = .string("cred-\(id)")
                            plugins[plugin] = .object(c)
                        }
                        o["plugins"] = .object(plugins)
                    }
                    obj = .object(o)
                }
                let leaf = slot.leaf
                out.append(Write(
                    resource: resource == "consumers" ? "/consumers" : "/\(resource)/\(id)",
                    key: resource == "consumers" ? "/consumers/\(id.replacingOccurrences(of: "-", with: "_"))" : "/\(resource)/\(id)",
                    body: body(obj, raw: raw, quoted: quoted),
                    slot: "\(resource)\(slot.text)", leaf: leaf, value: shown, requestPath: routePath == nil ? nil : "/fz/\(id)/",
                    delays: leaf.contains("delay") || leaf.contains("duration")))
            }
        }
        let nodes: JSONValue = ["type": "roundrobin", "nodes": .object([upstream: 1]), "timeout": ["connect": 1, "send": 1, "read": 1]]
        // Routes: their own fields and their inline upstream's.
        let routeSchema = try await admin.call(.GET, "/schema/route").json
        let routeBase: JSONValue = ["uri": "/fz", "upstream": nodes, "timeout": ["connect": 1, "send": 1, "read": 1]]
        for slot in slots(routeSchema, skipping: ["plugins", "id", "upstream_id", "service_id", "plugin_config_id", "create_time", "update_time"]) {
            add("routes", routeBase, slot, routePath: "")
        }
        // Upstreams and services on their own.
        for (kind, schemaName) in [("upstreams", "upstream"), ("services", "service")] {
            let schema = try await admin.call(.GET, "/schema/\(schemaName)").json
            let base: JSONValue = kind == "upstreams" ? nodes : ["upstream": nodes]
            for slot in slots(schema, skipping: ["plugins", "id", "upstream_id", "create_time", "update_time"]) {
                add(kind, base, slot, routePath: nil)
            }
        }
        // Every plugin's fields, on a route.
        let names = try await admin.call(.GET, "/plugins/list").json.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(names.count >= 20, "plugins/list: \(names)")
        for name in names {
            let base = try #require(pluginBases[name].flatMap { try? JSONValue.parse($0) }, "no base config for \(name)")
            let schema = try await admin.call(.GET, "/schema/plugins/\(name)").json
            for slot in slots(schema, skipping: ["_meta"]) {
                let route: JSONValue = ["uri": "/fz", "upstream": nodes, "plugins": .object([name: base])]
                add("routes", route, Slot(path: [.key("plugins"), .key(name)] + slot.path, numeric: slot.numeric), routePath: "")
            }
            // A consumer's credentials.
            let consumerSchema = try await admin.call(.GET, "/schema/plugins/\(name)?schema_type=consumer").json
            if consumerSchema["properties"] != nil, case .object = consumerSchema {
                let credential: JSONValue =
                    switch name {
                    case "jwt-auth": ["key": "k-jwt", "secret": "s"]
                    case "basic-auth": ["username": "u", "password": "p"]
                    default: ["key": "k"]
                    }
                for slot in slots(consumerSchema) {
                    let consumer: JSONValue = ["username": "c", "plugins": .object([name: credential])]
                    add("consumers", consumer, Slot(path: [.key("plugins"), .key(name)] + slot.path, numeric: slot.numeric), routePath: nil)
                }
            }
        }
        // Hand cases where the schema has free keys: node weights, header maps, vars operands.
        for v in extremeNumbers {
            n += 1
            let id = "fz-\(n)"
            for (leaf, text) in [
                ("nodes", #"{"uri":"/fz/\#(id)/*","upstream":{"nodes":{"\#(upstream)":\#(v)}}}"#),
                ("vars", #"{"uri":"/fz/\#(id)/*","vars":[["arg_x","in",[\#(v)]]],"upstream":{"nodes":{"\#(upstream)":1}}}"#),
                ("vars", #"{"uri":"/fz/\#(id)/*","vars":[["arg_x",">",\#(v)],["arg_y","==",\#(v)]],"upstream":{"nodes":{"\#(upstream)":1}}}"#),
                ("headers", #"{"uri":"/fz/\#(id)/*","plugins":{"proxy-rewrite":{"headers":{"x-n":\#(v)}}},"upstream":{"nodes":{"\#(upstream)":1}}}"#),
                ("priority", #"{"uri":"/fz/\#(id)/*","plugins":{"echo":{"body":"x","_meta":{"priority":\#(v)}}},"upstream":{"nodes":{"\#(upstream)":1}}}"#),
            ] {
                n += 1
                let rid = "fz-\(n)"
                let fixed = text.replacingOccurrences(of: "/fz/\(id)", with: "/fz/\(rid)")
                out.append(Write(resource: "/routes/\(rid)", key: "/routes/\(rid)", body: Array(fixed.utf8), slot: "routes.\(leaf)", leaf: leaf, value: v, requestPath: "/fz/\(rid)/", delays: false))
            }
        }
        // The crashers the robustness review found, as reported.
        for (leaf, text) in [
            ("headers", #"{"plugins":{"proxy-rewrite":{"headers":{"x-api":"$remote_addr","name":"$arg_name","x-key":"$http_key"}}}"#),
            ("conn", #"{"plugins":{"limit-conn":{"conn":9223372036854775807,"burst":9223372036854775807,"default_conn_delay":0.1,"key":"remote_addr"}}"#),
            ("vars", #"{"vars":[["arg_x","in",[1e19]]]"#),
            ("length", #"{"plugins":{"request-id":{"algorithm":"range_id","range_id":{"length":2147483647,"char_set":"abcdefg"}}}"#),
            ("block_rules", #"{"plugins":{"uri-blocker":{"block_rules":["(a+)+$"]}}"#),
            ("regex_uri", #"{"plugins":{"proxy-rewrite":{"regex_uri":["(a+)+$","/x"]}}"#),
        ] {
            n += 1
            let id = "fz-\(n)"
            let body = text + #","uri":"/fz/\#(id)/*","upstream":{"nodes":{"\#(upstream)":1}}}"#
            out.append(Write(resource: "/routes/\(id)", key: "/routes/\(id)", body: Array(body.utf8), slot: "routes.\(leaf)", leaf: leaf, value: "as reported", requestPath: "/fz/\(id)/", delays: false))
        }
        for s in hostileStrings {
            for (leaf, make) in [
                ("headers", { (id: String, v: [UInt8]) -> [UInt8] in Array(#"{"uri":"/fz/\#(id)/*","plugins":{"echo":{"body":"x","headers":{"x-h":""#.utf8) + v + Array(#""}}},"upstream":{"nodes":{"\#(upstream)":1}}}"#.utf8) }),
                ("headers", { (id: String, v: [UInt8]) -> [UInt8] in Array(#"{"uri":"/fz/\#(id)/*","plugins":{"proxy-rewrite":{"headers":{"set":{"x-h":""#.utf8) + v + Array(#""}}}},"upstream":{"nodes":{"\#(upstream)":1}}}"#.utf8) }),
                ("vars", { (id: String, v: [UInt8]) -> [UInt8] in Array(#"{"uri":"/fz/\#(id)/*","vars":[["arg_x","~~",""#.utf8) + v + Array(#""]],"upstream":{"nodes":{"\#(upstream)":1}}}"#.utf8) }),
                ("nodes", { (id: String, v: [UInt8]) -> [UInt8] in Array(#"{"uri":"/fz/\#(id)/*","upstream":{"nodes":{""#.utf8) + v + Array(#":80":1}}}"#.utf8) }),
            ] {
                n += 1
                let id = "fz-\(n)"
                out.append(Write(
                    resource: "/routes/\(id)", key: "/routes/\(id)", body: make(id, s), slot: "routes.\(leaf)", leaf: leaf, value: String(decoding: s.prefix(24), as: UTF8.self),
                    requestPath: "/fz/\(id)/", delays: false))
            }
        }
        return out
    }

    static func put(_ http: TestHTTPClient, _ w: Write) async throws -> (status: Int, message: String) {
        let r = try await http.request(
            .PUT, "/apisix/admin\(w.resource)", headers: [("Content-Type", "application/json"), ("X-API-KEY", adminKey)],
            body: ByteBuffer(bytes: w.body), timeout: .seconds(20))
        let json = (try? JSONValue.parse(r.bodyString)) ?? .null
        return (Int(r.status.code), json["error_msg"]?.stringValue ?? json["message"]?.stringValue ?? r.bodyString)
    }

    /// A request through a route, on a connection of its own; true when any answer came.
    static func answered(_ port: Int, _ path: String, timeout: TimeAmount) async -> Bool {
        guard let c = try? await TestHTTPClient.connect(port: port, group: Gateway.group) else { return false }
        defer { Task { await c.close() } }
        // Input that makes a backtracking engine explode on the regex bombs above.
        let bomb = String(repeating: "a", count: 40) + "!"
        let headers = [("key", bomb), ("apikey", "k"), ("x-real-ip", "10.1.2.3"), ("Origin", "http://\(bomb).example")]
        return (try? await c.request(.GET, path + bomb + "?x=\(bomb)&name=a%0D%0Ab", headers: headers, timeout: timeout)) != nil
    }

    @Test func everyFieldAtItsExtremesThroughTheAdminAPI() async throws {
        let dir = makeTemporaryDirectory()
        let up = try await startUpstream("up")
        let p = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey, "--workers", "1"], directory: dir)
        let ports = try await p.ports()
        let admin = AdminClient(http: try await TestHTTPClient.connect(port: ports.admin, group: Gateway.group))
        let writes = try await Self.writes(admin: admin, upstream: up.address)
        #expect(writes.count > 500, "only \(writes.count) writes: the schema walk found too few fields")
        var accepted: [Write] = []
        var refused = 0
        var http = admin.http
        for w in writes {
            if !http.isActive { http = try await TestHTTPClient.connect(port: ports.admin, group: Gateway.group) }
            let (status, message) = try await Self.put(http, w)
            if (200..<300).contains(status) {
                accepted.append(w)
            } else {
                refused += 1
                #expect(status == 400, "\(w.slot) = \(w.value): \(status) \(message)")
                #expect(message.contains(w.leaf), "\(w.slot) = \(w.value): the error does not name \(w.leaf): \(message)")
            }
            try #require(p.process.isRunning, "the gateway died on \(w.slot) = \(w.value): \(p.text.suffix(2000))")
        }
        #expect(!accepted.isEmpty && refused > 0)
        print("hostile writes through the Admin API: \(writes.count), accepted \(accepted.count), refused \(refused)")
        // A request through every accepted route answers (a configured delay may hold it).
        for w in accepted {
            guard let path = w.requestPath else { continue }
            let ok = await Self.answered(ports.proxy, path, timeout: w.delays ? .milliseconds(300) : .seconds(5))
            #expect(ok || w.delays, "no answer through \(w.slot) = \(w.value)")
            try #require(p.process.isRunning, "the gateway died serving \(w.slot) = \(w.value): \(p.text.suffix(2000))")
        }
        await http.close()
        // A restart on the resulting data dir starts and serves.
        p.kill(SIGTERM)
        #expect(await p.waitForExit() == 0)
        let again = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey, "--workers", "1"], directory: dir)
        let ports2 = try await again.ports()
        let c = AdminClient(http: try await TestHTTPClient.connect(port: ports2.admin, group: Gateway.group))
        #expect(try await c.call(.PUT, "/routes/alive", #"{"uri":"/alive","upstream":{"nodes":{"\#(up.address)":1}}}"#).status == 201)
        let client = try await TestHTTPClient.connect(port: ports2.proxy, group: Gateway.group)
        #expect(try await client.request(.GET, "/alive").status == .ok)
        let listed = try await c.call(.GET, "/routes").json["total"]?.intValue ?? 0
        #expect(listed >= Int64(accepted.filter { $0.resource.hasPrefix("/routes/") }.count))
        await client.close()
        await c.close()
        again.kill(SIGTERM)
        _ = await again.waitForExit()
        await up.stop()
    }

    /// The same writes straight into etcd, as another tool (or `etcdctl put`) would make
    /// them: invalid objects are skipped with a metric, the process lives, every route
    /// path answers, and a restart on the same prefix starts and serves.
    @Test func everyFieldAtItsExtremesThroughEtcd() async throws {
        let etcd = try await EtcdTestServer.start(group: Gateway.group)
        let dir = makeTemporaryDirectory()
        let up = try await startUpstream("up")
        let args = ["--etcd", etcd.url, "--etcd-prefix", "/hostile", "--admin-key", adminKey, "--workers", "1"]
        let p = try GatewayProcess.serve(args, directory: dir)
        let ports = try await p.ports()
        let admin = AdminClient(http: try await TestHTTPClient.connect(port: ports.admin, group: Gateway.group))
        let writes = try await Self.writes(admin: admin, upstream: up.address)
        await admin.close()
        // The known crashers through etcdctl itself, then everything through the JSON gateway.
        _ = try etcd.etcdctl(["put", "/hostile/routes/ctl-vars", #"{"uri":"/ctl","vars":[["arg_x","in",[1e19]]],"upstream":{"nodes":{"\#(up.address)":1}}}"#])
        _ = try etcd.etcdctl(["put", "/hostile/routes/ctl-conn", #"{"uri":"/ctl2","plugins":{"limit-conn":{"conn":9223372036854775807,"burst":9223372036854775807,"default_conn_delay":0.1,"key":"remote_addr"}},"upstream":{"nodes":{"\#(up.address)":1}}}"#])
        let client = EtcdClient(endpoints: [try #require(EtcdEndpoint(url: etcd.url))], group: Gateway.group)
        var last: Int64 = 0
        for w in writes {
            if let kv = try await client.put("/hostile\(w.key)", w.body, ifModRevision: nil) { last = max(last, kv.modRevision) }
        }
        await client.close()
        // Wait until the gateway has applied the last revision.
        let metrics = try await TestHTTPClient.connect(port: ports.metrics, group: Gateway.group)
        func applied() async throws -> Int64 {
            let text = try await metrics.request(.GET, "/apisix/prometheus/metrics").bodyString
            let line = text.split(separator: "\n").first { $0.hasPrefix("apisix_etcd_modify_indexes{key=\"x_etcd_index\"}") }
            return line.flatMap { $0.split(separator: " ").last.flatMap { Int64($0) } } ?? 0
        }
        #expect(try await eventually(timeout: .seconds(60)) { try await applied() >= last }, "the gateway did not catch up to revision \(last)")
        try #require(p.process.isRunning, "the gateway died: \(p.text.suffix(2000))")
        let text = try await metrics.request(.GET, "/apisix/prometheus/metrics").bodyString
        let skipped = text.split(separator: "\n").first { $0.hasPrefix("sluice_config_objects_skipped_total ") }
        #expect((skipped?.split(separator: " ").last.flatMap { Int($0) } ?? 0) > 0, "no skipped objects counted")
        await metrics.close()
        for w in writes {
            guard let path = w.requestPath else { continue }
            let ok = await Self.answered(ports.proxy, path, timeout: w.delays ? .milliseconds(300) : .seconds(5))
            #expect(ok || w.delays, "no answer through \(w.slot) = \(w.value)")
            try #require(p.process.isRunning, "the gateway died serving \(w.slot) = \(w.value): \(p.text.suffix(2000))")
        }
        p.kill(SIGTERM)
        _ = await p.waitForExit()
        // A restart on the same prefix: it starts and serves.
        let again = try GatewayProcess.serve(args, directory: dir)
        let ports2 = try await again.ports()
        let c = AdminClient(http: try await TestHTTPClient.connect(port: ports2.admin, group: Gateway.group))
        #expect(try await c.call(.PUT, "/routes/alive", #"{"uri":"/alive","upstream":{"nodes":{"\#(up.address)":1}}}"#).status == 201)
        let proxy = try await TestHTTPClient.connect(port: ports2.proxy, group: Gateway.group)
        #expect(try await eventually { (try? await proxy.request(.GET, "/alive").status) == .ok })
        await proxy.close()
        await c.close()
        again.kill(SIGTERM)
        _ = await again.waitForExit()
        await up.stop()
        await etcd.remove()
    }

    /// The same objects in a declarative file: `sluice validate` lists errors and exits 2
    /// (never dies on a signal); `serve --standalone` refuses the file with exit 2; the
    /// objects it did not name start and serve.
    @Test func everyFieldAtItsExtremesThroughTheDeclarativeFile() async throws {
        let dir = makeTemporaryDirectory()
        let up = try await startUpstream("up")
        let p = try GatewayProcess.serve(["--data-dir", "data", "--admin-key", adminKey, "--workers", "1"], directory: dir)
        let admin = AdminClient(http: try await TestHTTPClient.connect(port: try await p.ports().admin, group: Gateway.group))
        let writes = try await Self.writes(admin: admin, upstream: up.address)
        await admin.close()
        p.kill(SIGTERM)
        _ = await p.waitForExit()
        // Objects that are JSON (raw invalid UTF-8 cannot sit in a file with the others).
        var objects: [(kind: String, value: JSONValue, write: Write)] = []
        for w in writes {
            guard case .object(var o)? = try? JSONValue.parse(w.body) else { continue }
            let parts = w.key.split(separator: "/")
            if parts[0] != "consumers" { o["id"] = .string(String(parts[1])) }
            objects.append((String(parts[0]), .object(o), w))
        }
        func file(_ list: [(kind: String, value: JSONValue, write: Write)]) -> String {
            var doc: [String: JSONValue] = [:]
            for o in list { doc[o.kind] = .array((doc[o.kind]?.arrayValue ?? []) + [o.value]) }
            return JSONValue.object(doc).serialized()
        }
        try file(objects).write(toFile: "\(dir)/all.json", atomically: true, encoding: .utf8)
        let validate = try GatewayProcess(["validate", "all.json"], directory: dir)
        #expect(await validate.waitForExit(timeout: .seconds(60)) == 2, "validate: \(validate.text.suffix(2000))")
        #expect(validate.process.terminationReason == .exit)
        let refused = try GatewayProcess.serve(["--standalone", "all.json", "--data-dir", "data2"], directory: dir)
        #expect(await refused.waitForExit(timeout: .seconds(60)) == 2)
        // The objects no error named: they start and serve.
        var named = Set<String>()
        for line in validate.text.split(separator: "\n") {
            // "all.json: routes[12].plugins...: message", one line per error (control
            // characters in a message are escaped).
            guard line.hasPrefix("all.json: "), let bracket = line.firstIndex(of: "]") else { continue }
            named.insert(String(line[line.index(line.startIndex, offsetBy: 10)...bracket]))  // "routes[12]"
        }
        var counters: [String: Int] = [:]
        var kept: [(kind: String, value: JSONValue, write: Write)] = []
        for o in objects {
            let position = "\(o.kind)[\(counters[o.kind, default: 0])]"
            counters[o.kind, default: 0] += 1
            if !named.contains(position) { kept.append(o) }
        }
        #expect(kept.count > 100)
        try file(kept).write(toFile: "\(dir)/kept.json", atomically: true, encoding: .utf8)
        let check = try GatewayProcess(["validate", "kept.json"], directory: dir)
        #expect(await check.waitForExit(timeout: .seconds(60)) == 0, "kept.json: \(check.text.suffix(2000))")
        let serving = try GatewayProcess.serve(["--standalone", "kept.json", "--data-dir", "data3", "--workers", "1"], directory: dir)
        let port = try await serving.ports().proxy
        for o in kept {
            guard let path = o.write.requestPath else { continue }
            let ok = await Self.answered(port, path, timeout: o.write.delays ? .milliseconds(300) : .seconds(5))
            #expect(ok || o.write.delays, "no answer through \(o.write.slot) = \(o.write.value)")
            try #require(serving.process.isRunning, "the gateway died serving \(o.write.slot) = \(o.write.value): \(serving.text.suffix(2000))")
        }
        serving.kill(SIGTERM)
        #expect(await serving.waitForExit() == 0)
        await up.stop()
    }
}
