import NIOCore
import NIOHTTP1
import SluiceAdmin
import SluiceCore
import SluiceTesting
import Testing

@Suite struct AdminAPITests {
    @Test func authenticationAndRoles() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        var r = try await c.call(.GET, "/routes", key: nil)
        #expect(r.status == 401)
        #expect(r.json == ["error_msg": "failed to check token"])
        r = try await c.call(.GET, "/routes", key: "wrong")
        #expect(r.status == 401)
        r = try await c.call(.GET, "/routes?api_key=\(adminKey)", key: nil)
        #expect(r.status == 200)
        #expect(r.headers.first(name: "x-api-version") == "v3")
        r = try await c.call(.GET, "/routes", key: viewerKey)
        #expect(r.status == 200)
        r = try await c.call(.PUT, "/upstreams/1", #"{"nodes":{"127.0.0.1:1":1}}"#, key: viewerKey)
        #expect(r.status == 401)
        #expect(try await c.call(.GET, "/upstreams/1").status == 404)
        await c.close()
        await gw.stop()
    }

    @Test func addressesOutsideAllowAdminAreRefused() async throws {
        let gw = try await AdminGateway.start(allowed: [CIDR("10.0.0.0/8")!])
        let c = try await gw.adminClient()
        let r = try await c.call(.GET, "/routes")
        #expect(r.status == 403)
        await c.close()
        await gw.stop()
    }

    @Test func crudWithV3Envelopes() async throws {
        let up = try await startUpstream("a")
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        var r = try await c.call(.PUT, "/upstreams/u1", #"{"type":"roundrobin","nodes":{"\#(up.address)":1}}"#)
        #expect(r.status == 201)
        #expect(r.json["key"] == "/apisix/upstreams/u1")
        #expect(r.json["value"]?["id"] == "u1")
        #expect(r.json["value"]?["create_time"]?.intValue != nil)
        r = try await c.call(.PUT, "/upstreams/u1", #"{"type":"least_conn","nodes":{"\#(up.address)":1}}"#)
        #expect(r.status == 200)
        r = try await c.call(.PUT, "/routes/1", #"{"uri":"/hello","upstream_id":"u1","name":"hello"}"#)
        #expect(r.status == 201)
        // ttl needs etcd: the embedded store refuses it rather than keeping the object forever.
        r = try await c.call(.PUT, "/routes/ttl?ttl=5", #"{"uri":"/ttl","upstream_id":"u1"}"#)
        #expect(r.status == 400)
        #expect(r.json["error_msg"]?.stringValue?.contains("ttl") == true)
        #expect(try await c.call(.PUT, "/routes/ttl?ttl=zero", #"{"uri":"/ttl","upstream_id":"u1"}"#).status == 400)
        #expect(try await c.call(.GET, "/routes/ttl").status == 404)
        r = try await c.call(.GET, "/routes/1")
        #expect(r.status == 200)
        #expect(r.json["key"] == "/apisix/routes/1")
        let created = try #require(r.json["createdIndex"]?.intValue)
        let modified = try #require(r.json["modifiedIndex"]?.intValue)
        #expect(created == modified)
        r = try await c.call(.GET, "/routes/nope")
        #expect(r.status == 404)
        #expect(r.json == ["message": "Key not found"])

        // POST generates an id.
        r = try await c.call(.POST, "/routes", #"{"uri":"/posted","upstream_id":"u1"}"#)
        #expect(r.status == 201)
        let postedID = try #require(r.json["value"]?["id"]?.stringValue)
        #expect(r.json["key"] == .string("/apisix/routes/\(postedID)"))

        // PATCH merges; null removes a field; a sub-path replaces one field.
        r = try await c.call(.PATCH, "/routes/1", #"{"methods":["GET"],"name":null}"#)
        #expect(r.status == 200)
        #expect(r.json["value"]?["methods"] == ["GET"])
        #expect(r.json["value"]?["name"] == nil)
        #expect(r.json["value"]?["uri"] == "/hello")
        r = try await c.call(.PATCH, "/routes/1/uri", #""/hi""#)
        #expect(r.status == 200)
        #expect(r.json["value"]?["uri"] == "/hi")
        r = try await c.call(.GET, "/routes/1")
        #expect(r.json["modifiedIndex"]!.intValue! > modified)
        #expect(r.json["createdIndex"]?.intValue == created)

        // List with total and paging.
        for i in 0..<12 { _ = try await c.call(.PUT, "/routes/p\(i)", #"{"uri":"/p\#(i)","upstream_id":"u1"}"#) }
        r = try await c.call(.GET, "/routes")
        #expect(r.json["total"] == 14)
        #expect(r.json["list"]?.arrayValue?.count == 14)
        r = try await c.call(.GET, "/routes?page=2&page_size=10")
        #expect(r.json["total"] == 14)
        #expect(r.json["list"]?.arrayValue?.count == 4)
        #expect(try await c.call(.GET, "/routes?page=0").status == 400)
        // Pages past the end are empty, however large the number ((page - 1) * size used to
        // overflow and kill the process, for viewer keys too).
        for page in ["3", "9223372036854775807", "922337203685477580"] {
            r = try await c.call(.GET, "/routes?page=\(page)&page_size=500", key: viewerKey)
            #expect(r.status == 200)
            #expect(r.json["total"] == 14)
            #expect(r.json["list"]?.arrayValue?.count == 0)
        }
        #expect(try await c.call(.GET, "/routes?page=9223372036854775808").status == 400)

        // DELETE refused while referenced, unless forced.
        r = try await c.call(.DELETE, "/upstreams/u1")
        #expect(r.status == 400)
        #expect(r.json["error_msg"]?.stringValue?.contains("route [1]") == true)
        r = try await c.call(.DELETE, "/routes/1")
        #expect(r.status == 200)
        #expect(r.json == ["deleted": "1", "key": "/apisix/routes/1"])
        #expect(try await c.call(.DELETE, "/routes/1").status == 404)
        r = try await c.call(.DELETE, "/upstreams/u1?force=true")
        #expect(r.status == 200)
        await c.close()
        await gw.stop()
        await up.stop()
    }

    /// Where APISIX's Admin API accepts or refuses a body, Sluice answers the same way.
    @Test func idsAndTimestampsAsAPISIX() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        let upstream = #""upstream":{"nodes":{"127.0.0.1:1":1}}"#
        // PUT on the collection with the id in the body.
        var r = try await c.call(.PUT, "/routes", #"{"id":"r9","uri":"/nine",\#(upstream)}"#)
        #expect(r.status == 201, "\(r.json)")
        #expect(try await c.call(.GET, "/routes/r9").json["value"]?["uri"] == "/nine")
        r = try await c.call(.PUT, "/upstreams", #"{"id":"u9","nodes":{"127.0.0.1:1":1}}"#)
        #expect(r.status == 201)
        r = try await c.call(.PUT, "/routes", #"{"uri":"/none",\#(upstream)}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "missing route id", "\(r.json)")
        // POST makes the id: one in the body is refused.
        r = try await c.call(.POST, "/routes", #"{"id":"r10","uri":"/ten",\#(upstream)}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "wrong route id, do not need it", "\(r.json)")
        // The gateway's timestamps cannot be written.
        for key in ["create_time", "update_time"] {
            r = try await c.call(.PUT, "/routes/r11", #"{"uri":"/x",\#(upstream),"\#(key)":1}"#)
            #expect(r.status == 400 && r.json["error_msg"]?.stringValue == "the property is forbidden: \(key)", "\(r.json)")
        }
        #expect(try await c.call(.GET, "/routes/r11").status == 404)
        // A PATCH of a stored object (which has timestamps) still works.
        #expect(try await c.call(.PATCH, "/routes/r9", #"{"uri":"/nine2"}"#).status == 200)
        // A consumer needs its username.
        r = try await c.call(.PUT, "/consumers", #"{"desc":"nobody"}"#)
        #expect(r.status == 400 && (r.json["error_msg"]?.stringValue ?? "").contains("username"), "\(r.json)")
        #expect(try await c.call(.GET, "/consumers").json["total"] == 0)
        // An integer id is stored as given (t/admin/routes2.t TEST 6).
        #expect(try await c.call(.PUT, "/routes", #"{"id":1,"uri":"/one",\#(upstream)}"#).status == 201)
        #expect(try await c.call(.GET, "/routes/1").json["value"]?["id"] == .int(1))
        // Ids that disagree, as APISIX words it (t/admin/upstream.t, routes.t, consumers2.t).
        r = try await c.call(.PUT, "/upstreams/u1", #"{"id":"u2","nodes":{"127.0.0.1:1":1}}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "wrong upstream id", "\(r.json)")
        r = try await c.call(.POST, "/routes/r12", #"{"uri":"/x",\#(upstream)}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "wrong route id, do not need it", "\(r.json)")
        r = try await c.call(.PUT, "/consumers/jack1", #"{"username":"jack"}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "wrong username", "\(r.json)")
        r = try await c.call(.POST, "/consumers", #"{"username":"jack"}"#)
        #expect(r.status == 405 && r.json["error_msg"] == "not supported `POST` method for consumer", "\(r.json)")
        // Two consumers cannot hold one credential (t/admin/consumers.t TEST 13, 16).
        #expect(try await c.call(.PUT, "/consumers", #"{"username":"case_a","plugins":{"key-auth":{"key":"k1"},"basic-auth":{"username":"u","password":"p"}}}"#).status == 201)
        r = try await c.call(.PUT, "/consumers", #"{"username":"case_b","plugins":{"key-auth":{"key":"k1"}}}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "duplicate key of plugin key-auth found with consumer: case_a", "\(r.json)")
        r = try await c.call(.PUT, "/consumers", #"{"username":"case_c","plugins":{"basic-auth":{"username":"u","password":"q"}}}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "duplicate username of plugin basic-auth found with consumer: case_a", "\(r.json)")
        #expect(try await c.call(.GET, "/consumers/case_b").status == 404)
        // The consumer itself may be written again with its own key.
        #expect(try await c.call(.PUT, "/consumers", #"{"username":"case_a","plugins":{"key-auth":{"key":"k1"}}}"#).status == 200)
        // One plugin runs in one global rule (t/admin/global-rules-conflict.t).
        #expect(try await c.call(.PUT, "/global_rules/1", #"{"plugins":{"limit-count":{"count":2,"time_window":60}}}"#).status == 201)
        r = try await c.call(.PUT, "/global_rules/2", #"{"plugins":{"limit-count":{"count":5,"time_window":60}}}"#)
        #expect(r.status == 400 && r.json["error_msg"] == "plugin 'limit-count' already exists in global rule with id '1'", "\(r.json)")
        #expect(try await c.call(.PUT, "/global_rules/1", #"{"plugins":{"limit-count":{"count":3,"time_window":60}}}"#).status == 200)
        // Deleting what a route uses, in APISIX's words.
        #expect(try await c.call(.PUT, "/services/s9", #"{\#(upstream)}"#).status == 201)
        #expect(try await c.call(.PUT, "/routes/r13", #"{"uri":"/13","service_id":"s9"}"#).status == 201)
        r = try await c.call(.DELETE, "/services/s9")
        #expect(r.status == 400 && r.json["error_msg"] == "can not delete this service directly, route [r13] is still using it now", "\(r.json)")
        // An upstream traffic-split names is in use too (t/admin/upstream5.t).
        #expect(try await c.call(.PUT, "/upstreams/ts", #"{"nodes":{"127.0.0.1:1":1}}"#).status == 201)
        let split = #"{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":"ts","weight":1}]}]}}"#
        #expect(try await c.call(.PUT, "/routes/r14", #"{"uri":"/14",\#(upstream),"plugins":\#(split)}"#).status == 201)
        r = try await c.call(.DELETE, "/upstreams/ts")
        #expect(r.status == 400 && r.json["error_msg"] == "can not delete this upstream, plugin in route [r14] is still using it now", "\(r.json)")
        await c.close()
        await gw.stop()
    }

    @Test func servicesConsumersPluginConfigsAndGlobalRules() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        #expect(try await c.call(.PUT, "/services/s1", #"{"upstream":{"nodes":{"127.0.0.1:1":1}},"hosts":["a.example"]}"#).status == 201)
        #expect(try await c.call(.PUT, "/routes/r", #"{"uri":"/s","service_id":"s1"}"#).status == 201)
        #expect(try await c.call(.DELETE, "/services/s1").status == 400)
        #expect(try await c.call(.PUT, "/consumers", #"{"username":"jack","desc":"a consumer"}"#).status == 201)
        #expect(try await c.call(.GET, "/consumers/jack").json["value"]?["username"] == "jack")
        #expect(try await c.call(.PUT, "/plugin_configs/pc", #"{"plugins":{}}"#).status == 201)
        #expect(try await c.call(.PUT, "/routes/r2", #"{"uri":"/pc","plugin_config_id":"pc"}"#).status == 201)
        #expect(try await c.call(.PUT, "/global_rules/g", #"{"plugins":{}}"#).status == 201)
        let ssl = try await c.call(.PUT, "/ssls/1", #"{"cert":"x","key":"y","snis":["a.example"]}"#)
        #expect(ssl.status == 400)
        // A certificate that is not PEM is refused naming the field (docs/tls.md has the rest).
        #expect(ssl.json["error_msg"]?.stringValue?.contains("cert:") == true)
        await c.close()
        await gw.stop()
    }

    @Test func pluginListAndSchemas() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        var r = try await c.call(.GET, "/plugins/list")
        #expect(r.status == 200)
        let names = r.json.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(names.first == "real-ip")  // highest priority first
        #expect(names.contains("key-auth") && names.contains("limit-count"))
        #expect(names.firstIndex(of: "key-auth")! < names.firstIndex(of: "limit-count")!)
        r = try await c.call(.GET, "/schema/plugins/key-auth")
        #expect(r.status == 200)
        #expect(r.json["properties"]?["header"]?["default"] == "apikey")
        #expect(r.json["properties"]?["_meta"]?["properties"]?["disable"] != nil)
        r = try await c.call(.GET, "/plugins/key-auth?schema_type=consumer")
        #expect(r.json["required"] == ["key"])
        r = try await c.call(.GET, "/schema/plugins/no-such-plugin")
        #expect(r.status == 404)
        r = try await c.call(.GET, "/schema/route")
        #expect(r.status == 200)
        #expect(r.json["properties"]?["uri"] != nil)
        r = try await c.call(.GET, "/schema/upstreams")
        #expect(r.json["properties"]?["nodes"] != nil)
        r = try await c.call(.POST, "/schema/validate/routes", #"{"uri":"/a","upstream":{"nodes":{"a:1":1}}}"#)
        #expect(r.status == 200)
        r = try await c.call(.POST, "/schema/validate/routes", #"{"uri":"/a","upstream":{"nodes":{"a:1":"x"}}}"#)
        #expect(r.status == 400)
        #expect(r.json["error_msg"]?.stringValue?.contains("upstream.nodes.a:1") == true)
        await c.close()
        await gw.stop()
    }

    @Test func bodiesAbove1_5MiBAreRefusedAsAPISIXRefusesThem() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        let huge = "{\"uri\":\"/a\",\"desc\":\"" + String(repeating: "x", count: 1_600_000) + "\"}"
        let r = try await c.call(.PUT, "/routes/big", huge)
        #expect(r.status == 400)
        #expect(r.json["error_msg"] == .string("invalid request body: request size \(huge.utf8.count) is greater than the maximum size 1572864 allowed"), "\(r.json)")
        await c.close()
        let c2 = try await gw.adminClient()
        #expect(try await c2.call(.GET, "/routes/big").status == 404)
        await c2.close()
        await gw.stop()
    }

    /// Each invalid body is refused with 400, an error naming the field, and no change.
    @Test func invalidBodiesChangeNothing() async throws {
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        #expect(try await c.call(.PUT, "/upstreams/u", #"{"nodes":{"127.0.0.1:1":1}}"#).status == 201)
        #expect(try await c.call(.PUT, "/routes/r", #"{"uri":"/ok","upstream_id":"u"}"#).status == 201)
        let before = try await c.call(.GET, "/routes/r").json
        let cases: [(String, String, String)] = [
            ("/routes/r", #"{"upstream_id":"u"}"#, "uri"),
            ("/routes/r", #"{"uri":"nope","upstream_id":"u"}"#, "uri"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"missing"}"#, "upstream_id"),
            ("/routes/r", #"{"uri":"/a","service_id":"missing"}"#, "service_id"),
            ("/routes/r", #"{"uri":"/a","plugin_config_id":"missing"}"#, "plugin_config_id"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","methods":["YELL"]}"#, "methods[0]"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","hosts":[]}"#, "hosts"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","remote_addrs":["300.0.0.1"]}"#, "remote_addrs[0]"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","vars":[["arg_x","<>","1"]]}"#, "vars[0][1]"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","priority":1.5}"#, "priority"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","status":7}"#, "status"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","enable_websocket":1}"#, "enable_websocket"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","timeout":{"connect":-1,"send":1,"read":1}}"#, "timeout.connect"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","plugins":{"limit-count":{}}}"#, "plugins.limit-count"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","labels":{"k":5}}"#, "labels.k"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","name":""}"#, "name"),
            ("/routes/r", #"{"uri":"/a","upstream_id":"u","extra":true}"#, "extra"),
            ("/routes/r", #"{"uri":"/a","upstream":{"nodes":{"h:70000":1}}}"#, "upstream.nodes.h:70000"),
            ("/routes/r", #"{"uri":"/a","upstream":{"type":"chash","nodes":{"h:1":1}}}"#, "upstream.key"),
            ("/routes/r", #"{"uri":"/a","upstream":{"nodes":[{"host":"","port":1,"weight":1}]}}"#, "upstream.nodes[0].host"),
            ("/routes/r", #"{"uri":"/a","upstream":{"nodes":{"h:1":1},"keepalive_pool":{"requests":0}}}"#, "upstream.keepalive_pool.requests"),
            ("/routes/r", #"{"uri":"/a","upstream":{"nodes":{"h:1":1},"hash_on":"moon"}}"#, "upstream.hash_on"),
            ("/routes/r", #"{"uri":"/a","upstream":{"nodes":{"h:1":1},"checks":{}}}"#, "upstream.checks"),
            ("/routes/r", #"["not","an","object"]"#, "object"),
            ("/routes/r", #"{"uri":"/a","#, "invalid"),
            ("/routes/r", "", "empty"),
            ("/upstreams/u", #"{"nodes":{"h:1":1},"pass_host":"rewrite"}"#, "upstream_host"),
            ("/upstreams/u", #"{"nodes":{"h:1":1},"retries":"3"}"#, "retries"),
            ("/upstreams/bad%20id", #"{"nodes":{"h:1":1}}"#, "id"),
            ("/services/s", #"{"upstream_id":"missing"}"#, "upstream_id"),
            ("/consumers/c", #"{"username":"other"}"#, "username"),
            ("/plugin_configs/p", #"{"desc":"no plugins"}"#, "plugins"),
        ]
        #expect(cases.count >= 25)
        for (path, body, field) in cases {
            let r = try await c.call(.PUT, path, body)
            #expect(r.status == 400, "\(path) \(body) → \(r.status) \(r.json)" as Comment)
            let message = r.json["error_msg"]?.stringValue ?? ""
            #expect(message.contains(field), "\(body): \(message)" as Comment)
        }
        #expect(try await c.call(.GET, "/routes/r").json == before)
        #expect(try await c.call(.GET, "/routes").json["total"] == 1)
        #expect(try await c.call(.GET, "/upstreams").json["total"] == 1)
        #expect(try await c.call(.GET, "/services").json["total"] == 0)
        // An invalid PATCH changes nothing either.
        #expect(try await c.call(.PATCH, "/routes/r", #"{"uri":"bad"}"#).status == 400)
        #expect(try await c.call(.GET, "/routes/r").json == before)
        await c.close()
        await gw.stop()
    }

    /// The Admin API answers only once the change is live: the very next proxied request
    /// after each 2xx must see it.
    @Test func aRoutePutIsServedByTheVeryNextRequest() async throws {
        let up = try await startUpstream("a")
        let gw = try await AdminGateway.start()
        let c = try await gw.adminClient()
        let proxy = try await gw.gateway.client()
        #expect(try await c.call(.PUT, "/upstreams/u", #"{"nodes":{"\#(up.address)":1}}"#).status == 201)
        for i in 0..<50 {
            #expect(try await c.call(.PUT, "/routes/n\(i)", #"{"uri":"/n\#(i)","upstream_id":"u"}"#).status == 201)
            let r = try await proxy.request(.GET, "/n\(i)")
            #expect(r.status == .ok, "route n\(i) not live after its 2xx" as Comment)
            #expect(try await c.call(.DELETE, "/routes/n\(i)").status == 200)
            #expect(try await proxy.request(.GET, "/n\(i)").status == .notFound)
        }
        await proxy.close()
        await c.close()
        await gw.stop()
        await up.stop()
    }

    @Test func configSurvivesARestart() async throws {
        let dir = makeTemporaryDirectory()
        let up = try await startUpstream("a")
        do {
            let gw = try await AdminGateway.start(directory: dir)
            let c = try await gw.adminClient()
            #expect(try await c.call(.PUT, "/routes/keep", #"{"uri":"/keep","upstream":{"nodes":{"\#(up.address)":1}}}"#).status == 201)
            await c.close()
            await gw.stop()
        }
        let gw = try await AdminGateway.start(directory: dir)
        let proxy = try await gw.gateway.client()
        #expect(try await proxy.request(.GET, "/keep").status == .ok)
        await proxy.close()
        await gw.stop()
        await up.stop()
    }

    @Test func standaloneAdminIsReadOnly() async throws {
        let gw = try await AdminGateway.start(readOnly: true)
        let c = try await gw.adminClient()
        let r = try await c.call(.PUT, "/routes/1", #"{"uri":"/a","upstream":{"nodes":{"h:1":1}}}"#)
        #expect(r.status == 405)
        #expect(try await c.call(.GET, "/routes").status == 200)
        await c.close()
        await gw.stop()
    }
}
