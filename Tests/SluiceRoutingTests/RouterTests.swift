import SluiceCore
import SluiceRouting
import Testing

final class Vars: RequestVariableSource {
    let values: [RequestVariable: String]
    init(values: [RequestVariable: String] = [:]) { self.values = values }
    func value(of variable: RequestVariable) -> String? { values[variable] }
}

typealias Entry = Router.Entry

func match(
    _ router: Router, _ path: String, host: String? = nil, method: String = "GET", ip: String? = "127.0.0.1",
    vars: [RequestVariable: String] = [:]
) -> String? {
    router.match(RouteRequest(path: path, host: host, method: method, remoteAddress: ip.flatMap { IPAddress($0) }, variables: Vars(values: vars)))?.id
}

@Suite struct RouterTests {
    @Test func exactPrefixAndParameterPaths() {
        let r = Router(entries: [
            Entry(id: "exact", paths: ["/get"], target: 0),
            Entry(id: "prefix", paths: ["/api/*"], target: 0),
            Entry(id: "param", paths: ["/user/:id"], target: 0),
            Entry(id: "param2", paths: ["/user/:id/books/:book"], target: 0),
            Entry(id: "tail", paths: ["/files/*path"], target: 0),
        ])
        #expect(match(r, "/get") == "exact")
        #expect(match(r, "/get/") == nil)
        #expect(match(r, "/gets") == nil)
        #expect(match(r, "/api/") == "prefix")
        #expect(match(r, "/api/a/b/c") == "prefix")
        #expect(match(r, "/api") == nil)
        #expect(match(r, "/user/42") == "param")
        #expect(match(r, "/user/") == nil)
        #expect(match(r, "/user/42/x") == nil)
        #expect(match(r, "/user/42/books/7") == "param2")
        #expect(match(r, "/files/a/b.txt") == "tail")
        #expect(match(r, "/nothing") == nil)
    }

    @Test func longestPathFirstThenPriority() {
        let r = Router(entries: [
            Entry(id: "short", paths: ["/a/*"], priority: 100, target: 0),
            Entry(id: "long", paths: ["/a/b/*"], target: 0),
            Entry(id: "exact", paths: ["/a/b/c"], target: 0),
            Entry(id: "low", paths: ["/p"], priority: 1, target: 0),
            Entry(id: "high", paths: ["/p"], priority: 5, target: 0),
            Entry(id: "static", paths: ["/u/me"], target: 0),
            Entry(id: "param", paths: ["/u/:id"], target: 0),
        ])
        #expect(match(r, "/a/b/x") == "long")
        #expect(match(r, "/a/x") == "short")
        #expect(match(r, "/a/b/c") == "exact")
        #expect(match(r, "/p") == "high")
        #expect(match(r, "/u/me") == "static")
        #expect(match(r, "/u/you") == "param")
    }

    /// An exact path beats a prefix of the same length even at a lower priority, as
    /// radixtree's exact lookup comes first.
    @Test func exactBeatsAPrefixOfTheSameLengthWhateverThePriority() {
        let r = Router(entries: [
            Entry(id: "exact", paths: ["/hello"], priority: 0, target: 0),
            Entry(id: "prefix", paths: ["/hello*"], priority: 10, target: 0),
        ])
        #expect(match(r, "/hello") == "exact")
        #expect(match(r, "/hello/x") == "prefix")
    }

    @Test func hostsExactWildcardAndHostRoutesFirst() {
        let r = Router(entries: [
            Entry(id: "any", paths: ["/x/*"], target: 0),
            Entry(id: "exact", paths: ["/*"], hosts: ["api.example.com"], target: 0),
            Entry(id: "wild", paths: ["/*"], hosts: ["*.example.com"], target: 0),
            Entry(id: "deeper", paths: ["/*"], hosts: ["*.eu.example.com"], target: 0),
        ])
        #expect(match(r, "/x/y", host: "api.example.com") == "exact")
        #expect(match(r, "/x/y", host: "www.example.com") == "wild")
        #expect(match(r, "/x/y", host: "a.eu.example.com") == "deeper")
        #expect(match(r, "/x/y", host: "example.com") == "any")
        #expect(match(r, "/x/y", host: "other.org") == "any")
        #expect(match(r, "/z", host: "other.org") == nil)
        #expect(match(r, "/x/y", host: nil) == "any")
    }

    @Test func methodsRemoteAddrsAndVars() {
        let r = Router(entries: [
            Entry(id: "post", paths: ["/m"], methods: MethodSet(["POST", "PUT"]), target: 0),
            Entry(id: "get", paths: ["/m"], methods: MethodSet(["GET"]), target: 0),
            Entry(id: "v6", paths: ["/ip"], remoteAddrs: [CIDR("2001:db8::/32")!], target: 0),
            Entry(id: "lan", paths: ["/ip"], remoteAddrs: [CIDR("10.0.0.0/8")!], target: 0),
            Entry(
                id: "canary", paths: ["/v"], vars: try! VarsExpression.parse(try! JSONValue.parse(#"[["http_x_canary","==","1"]]"#), path: ""),
                priority: 1, target: 0),
            Entry(id: "stable", paths: ["/v"], target: 0),
        ])
        #expect(match(r, "/m", method: "POST") == "post")
        #expect(match(r, "/m", method: "GET") == "get")
        #expect(match(r, "/m", method: "DELETE") == nil)
        #expect(match(r, "/m", method: "BREW") == nil)
        #expect(match(r, "/ip", ip: "10.9.9.9") == "lan")
        #expect(match(r, "/ip", ip: "2001:db8::5") == "v6")
        #expect(match(r, "/ip", ip: "192.168.1.1") == nil)
        #expect(match(r, "/ip", ip: nil) == nil)
        #expect(match(r, "/v", vars: [.header("x-canary"): "1"]) == "canary")
        #expect(match(r, "/v", vars: [.header("x-canary"): "0"]) == "stable")
        #expect(match(r, "/v") == "stable")
    }

    @Test func manyCandidatesOverflowTheStackBuffer() {
        // 40 routes on one path, distinguished by vars: the 40th must still be found.
        var entries: [Entry] = []
        for i in 0..<40 {
            let expr = try! VarsExpression.parse(try! JSONValue.parse("[[\"arg_n\",\"==\",\"\(i)\"]]"), path: "")
            entries.append(Entry(id: "r\(i)", paths: ["/same"], vars: expr, priority: i, target: 0))
        }
        let r = Router(entries: entries)
        #expect(match(r, "/same", vars: [.arg("n"): "0"]) == "r0")
        #expect(match(r, "/same", vars: [.arg("n"): "39"]) == "r39")
    }

    @Test func lookupDoesNotDependOnRouteCount() {
        // 100,000 distinct routes: each still matches exactly itself.
        var entries: [Entry] = []
        for i in 0..<100_000 { entries.append(Entry(id: "\(i)", paths: ["/svc/\(i)/items/*"], target: 0)) }
        let r = Router(entries: entries)
        for i in stride(from: 0, to: 100_000, by: 9_973) {
            #expect(match(r, "/svc/\(i)/items/x") == "\(i)")
        }
        #expect(match(r, "/svc/100000/items/x") == nil)
    }
}
