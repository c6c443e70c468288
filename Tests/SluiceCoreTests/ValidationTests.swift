import SluiceCore
import Testing

/// The ConfigError `decode` throws for `json` (nil when it decodes); any other error is
/// recorded as an issue.
func decodeError(_ json: String, _ decode: (JSONValue) throws -> Void) -> ConfigError? {
    do {
        try decode(try JSONValue.parse(json))
        return nil
    } catch let e as ConfigError {
        return e
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

@Suite struct ValidationTests {
    func routeError(_ json: String) -> ConfigError? { decodeError(json) { _ = try Route.decode($0) } }

    @Test func acceptsTheContractExample() throws {
        let route = try Route.decode(
            try JSONValue.parse(
                #"{"uris":["/a","/b/*"],"hosts":["*.example.com"],"methods":["GET","POST"],"remote_addrs":["10.0.0.0/8","::1"],"vars":[["http_x_canary","==","1"]],"priority":3,"upstream":{"type":"chash","hash_on":"header","key":"x-user","nodes":[{"host":"10.1.36.100","port":80,"weight":100,"priority":0}],"retries":1,"timeout":{"connect":6,"send":6,"read":6},"pass_host":"rewrite","upstream_host":"internal","keepalive_pool":{"size":10,"idle_timeout":5,"requests":100}},"enable_websocket":true,"status":1,"timeout":{"connect":1,"send":2,"read":3},"name":"r","desc":"d","labels":{"k":"v"}}"#
            ))
        #expect(route.uris == ["/a", "/b/*"])
        #expect(route.hosts == ["*.example.com"])
        #expect(route.remoteAddrs.count == 2)
        #expect(route.upstream?.type == .chash)
        #expect(route.upstream?.nodes == [UpstreamNode(host: "10.1.36.100", port: 80, weight: 100)])
        #expect(route.upstream?.keepalivePool == KeepalivePool(size: 10, idleTimeout: 5, requests: 100))
        #expect(route.timeout == Timeouts(connect: 1, send: 2, read: 3))
    }

    /// Every invalid body is refused with an error naming the field.
    @Test(arguments: [
        (#"{"upstream_id":"1"}"#, "uri", "is required"),
        (#"{"uri":"get","upstream_id":"1"}"#, "uri", "must start with /"),
        (#"{"uri":"/a","uris":["/b"],"upstream_id":"1"}"#, "uris", "either uri or uris"),
        (#"{"uri":"/a/*/b","upstream_id":"1"}"#, "uri", "* may only end"),
        (#"{"uri":"/a/:","upstream_id":"1"}"#, "uri", "parameter needs a name"),
        (#"{"uri":"/a"}"#, "upstream", "a route needs"),
        (#"{"uri":"/a","upstream_id":"bad id!"}"#, "upstream_id", "must match"),
        (#"{"uri":"/a","upstream_id":"1","methods":["GET","FETCH"]}"#, "methods[1]", "must be one of"),
        (#"{"uri":"/a","upstream":{"nodes":[{"host":"::1","port":80,"weight":1}]}}"#, "upstream.nodes[0].host", "IPv6 address must be enclosed"),
        (#"{"uri":"/a","upstream_id":"1","hosts":["exa mple.com"]}"#, "hosts[0]", "host name"),
        (#"{"uri":"/a","upstream_id":"1","remote_addrs":["10.0.0.0/33"]}"#, "remote_addrs[0]", "IP address or CIDR"),
        (#"{"uri":"/a","upstream_id":"1","priority":"high"}"#, "priority", "must be an integer"),
        (#"{"uri":"/a","upstream_id":"1","status":2}"#, "status", "must be 0-1"),
        (#"{"uri":"/a","upstream_id":"1","enable_websocket":"yes"}"#, "enable_websocket", "must be a boolean"),
        (#"{"uri":"/a","upstream_id":"1","timeout":{"connect":0,"send":1,"read":1}}"#, "timeout.connect", "greater than 0"),
        (#"{"uri":"/a","upstream_id":"1","timeout":{"connect":1,"send":1}}"#, "timeout.read", "is required"),
        (#"{"uri":"/a","upstream_id":"1","vars":[["http_x","=~","1"]]}"#, "vars[0][1]", "unknown operator"),
        (#"{"uri":"/a","upstream_id":"1","vars":[["nope","==","1"]]}"#, "vars[0][0]", "unknown variable"),
        (#"{"uri":"/a","upstream_id":"1","vars":[["uri","~~","(unclosed"]]}"#, "vars[0][2]", "invalid regular expression"),
        (#"{"uri":"/a","upstream_id":"1","plugins":{"no-such-plugin":{}}}"#, "plugins.no-such-plugin", "unknown plugin"),
        (#"{"uri":"/a","upstream_id":"1","plugins":{"key-auth":{"header":7}}}"#, "plugins.key-auth.header", "must be a string"),
        (#"{"uri":"/a","upstream_id":"1","plugins":{"limit-count":{"count":0,"time_window":60}}}"#, "plugins.limit-count.count", "must be > 0"),
        (#"{"uri":"/a","upstream_id":"1","colour":"red"}"#, "colour", "unknown field"),
        (#"{"uri":"/a","upstream_id":"1","labels":{"env":"a b"}}"#, "labels.env", "failed to match pattern"),
        (#"{"uri":"/a","upstream":{"nodes":{"127.0.0.1:99999":1}}}"#, "upstream.nodes.127.0.0.1:99999", "port must be 1-65535"),
        (#"{"uri":"/a","upstream":{"nodes":[{"host":"a","port":80,"weight":1},{"host":"b","port":0,"weight":1}]}}"#, "upstream.nodes[1].port", "must be 1-65535"),
        (#"{"uri":"/a","upstream":{"nodes":[{"host":"a","port":80}]}}"#, "upstream.nodes[0].weight", "is required"),
        (#"{"uri":"/a","upstream":{"nodes":{"a:80":-1}}}"#, "upstream.nodes.a:80", "weight must be"),
        (#"{"uri":"/a","upstream":{"type":"random","nodes":{"a:80":1}}}"#, "upstream.type", "must be one of"),
        (#"{"uri":"/a","upstream":{"type":"chash","nodes":{"a:80":1}}}"#, "upstream.key", "required when type is chash"),
        (#"{"uri":"/a","upstream":{"nodes":{"a:80":1},"pass_host":"rewrite"}}"#, "upstream.upstream_host", "required when pass_host is rewrite"),
        (#"{"uri":"/a","upstream":{"nodes":{"a:80":1},"retries":-1}}"#, "upstream.retries", "must be"),
        (#"{"uri":"/a","upstream":{"nodes":{"a:80":1},"keepalive_pool":{"size":0}}}"#, "upstream.keepalive_pool.size", "must be"),
        (#"{"uri":"/a","upstream":{}}"#, "upstream.nodes", "is required"),
        (#"{"uri":"/a","upstream":{"nodes":"a:80"}}"#, "upstream.nodes", "must be an object"),
        (#"{"uri":"/a","upstream":{"nodes":[{"host":"a","port":80,"weight":1},{"host":"a","port":80,"weight":2}]}}"#, "upstream.nodes[1]", "duplicate node"),
        (#"{"uri":"/a","upstream":{"nodes":{"a:80":1},"scheme":"ftp"}}"#, "upstream.scheme", "must be one of"),
        (#"["uri"]"#, "", "must be an object"),
    ])
    func refusesInvalidRoute(_ json: String, _ path: String, _ fragment: String) {
        let error = routeError(json)
        #expect(error?.path == path, "for \(json): \(String(describing: error))")
        #expect(error?.message.contains(fragment) == true, "for \(json): \(String(describing: error))")
    }

    /// APISIX takes node weights above 2^31 (Lua numbers); balancers weigh them as 2^31 - 1.
    @Test func largeNodeWeightsAreAccepted() throws {
        let map = try Upstream.decode(try JSONValue.parse(#"{"nodes":{"a:80":4294967296,"b:80":1}}"#))
        #expect(map.nodes.first { $0.host == "a" }?.weight == Int(Int32.max))
        let list = try Upstream.decode(try JSONValue.parse(#"{"nodes":[{"host":"a","port":80,"weight":9007199254740992}]}"#))
        #expect(list.nodes[0].weight == Int(Int32.max))
    }

    @Test func declarativeFileReportsEveryErrorWithItsPath() throws {
        let doc = try JSONValue.parse(
            #"{"routes":[{"id":"1","uri":"/a","upstream_id":"missing"},{"id":"2","uri":"nope","upstream_id":"u"},{"uri":"/c","upstream_id":"u"}],"upstreams":[{"id":"u","nodes":{"127.0.0.1:1":1}}],"ssls":[{"id":"s"}],"bogus":[]}"#
        )
        guard case .failure(let errors) = DeclarativeConfig.decode(doc) else {
            Issue.record("expected failure")
            return
        }
        let text = errors.errors.map(\.description)
        #expect(text.contains("bogus: unknown resource kind (expected one of routes, services, upstreams, consumers, ssls, global_rules, plugin_configs, stream_routes)"))
        #expect(text.contains("routes[1].uri: must start with /, got \"nope\""))
        #expect(text.contains("routes[2].id: is required"))
        #expect(text.contains("routes[0].upstream_id: upstream \"missing\" not found"))
        #expect(text.contains("ssls[0].cert: is required"))
    }
}
