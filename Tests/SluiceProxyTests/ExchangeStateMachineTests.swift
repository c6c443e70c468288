import NIOCore
import NIOHTTP1
import SluiceBalancing
import SluiceCore
import Testing

@testable import SluiceProxy

/// Balancers by upstream, as a loop keeps them.
final class TestBalancers: BalancerSource {
    var byKey: [String: Balancer] = [:]
    func balancer(for upstream: CompiledUpstream) -> Balancer {
        if let b = byKey[upstream.key] { return b }
        let b = Balancer(plan: upstream.plan)
        byKey[upstream.key] = b
        return b
    }
}

/// The exchange state machine driven event by event, with no channel and no socket.
@Suite struct ExchangeStateMachineTests {
    static let twoNodes = #"""
        {"routes":[{"id":"r","uri":"/*","timeout":{"connect":1,"send":2,"read":3},
          "upstream":{"type":"least_conn","nodes":{"10.0.0.1:80":1,"10.0.0.2:80":1}}}]}
        """#

    let balancers = TestBalancers()

    func snapshot(_ config: String) throws -> ConfigSnapshot {
        let state = try DeclarativeConfig.decode(try JSONValue.parse(config)).get()
        return SnapshotCompiler().compile(state)
    }

    func head(_ method: HTTPMethod = .GET, _ target: String = "/x", _ extra: [(String, String)] = []) throws -> RequestHead {
        RequestHead(method: method, target: target, version: .http1_1, fields: try HeaderBlock([("Host", "api.test")] + extra))
    }

    func machine(
        _ config: String = twoNodes, head: RequestHead? = nil, framing: BodyFraming = .none, now: NIODeadline = .uptimeNanoseconds(1_000_000_000)
    ) throws -> ExchangeStateMachine {
        let snap = try snapshot(config)
        var info = ClientConnectionInfo()
        info.address = "192.0.2.9"
        info.serverPortText = "9080"
        var refusal: ExchangeRouting.Refusal? = nil
        let m = ExchangeRouting.route(
            try head ?? self.head(), framing: framing, keepAlive: true, connection: info, snapshot: snap,
            variables: HTTPRequestVariables(), balancers: balancers, limits: .init(), now: now, refusal: &refusal)
        #expect(refusal == nil)
        return m
    }

    func active(_ node: Int) -> Int { balancers.byKey.values.first?.activeRequests(node) ?? -1 }

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func aClientLeavingWhileConnectingReleasesTheNodeOnce() throws {
        var other = try machine()
        _ = other.event(.start, now: Self.t0)
        var m = try machine()
        let a = m.event(.start, now: Self.t0)
        guard case .acquire = a.upstream else { throw Expectation.failed("no acquire") }
        // least_conn spreads the two exchanges over both nodes: 1 each.
        #expect(active(0) == 1 && active(1) == 1)
        let held = try #require(m.heldNode)
        _ = m.event(.clientClosed, now: Self.t0)
        #expect(active(held) == 0)
        // The connection completes later: it is closed, and nothing is released again.
        let late = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        guard case .close = late.upstream else { throw Expectation.failed("late connection not closed") }
        _ = m.event(.upstreamConnectFailed(timedOut: false), now: Self.t0)
        #expect(active(held) == 0)
        #expect(active(1 - held) == 1)  // the other exchange still holds its node
        let once = m.finishLog(), twice = m.finishLog()
        #expect(once != nil && twice == nil)  // the log phase runs once
    }

    @Test func aResponseIsStreamedAndTheConnectionPooled() throws {
        var m = try machine()
        _ = m.event(.start, now: Self.t0)
        let bound = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        guard case .send(let up, _, _, let end) = bound.upstream else { throw Expectation.failed("no send") }
        #expect(end)
        #expect(up.sentFields.first(.host) == "api.test")
        #expect(up.sentFields.first(.xForwardedFor) == "192.0.2.9")
        #expect(up.sentFields.first(name: "x-forwarded-port") == "9080")
        let head = m.event(.responseHead(ResponseHead(status: 200, fields: try HeaderBlock([("Content-Length", "2"), ("Connection", "keep-alive")]))), now: Self.t0)
        guard case .head(let out, let close) = head.downstream else { throw Expectation.failed("no head") }
        #expect(!close && out.fields.first(.contentLength) == "2")
        // The upstream's hop-by-hop fields do not reach the client.
        var wire = ByteBuffer()
        HTTP1Writer.writeResponseHead(out, framing: .length(2), connection: nil, into: &wire, version: .http1_1)
        #expect(String(buffer: wire) == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        let body = m.event(.responseBody(ByteBuffer(string: "ok")), now: Self.t0)
        guard case .body = body.downstream else { throw Expectation.failed("no body") }
        let end2 = m.event(.responseEnd(nil), now: Self.t0)
        guard case .release(let reusable, _) = end2.upstream, case .finished(let c) = end2.completion else { throw Expectation.failed("not finished") }
        #expect(reusable && !c)
        #expect(active(0) == 0 && active(1) == 0)
        let finished = m.finishLog()
        let log = try #require(finished)
        #expect(log.status == 200 && log.bodyBytesSent == 2 && log.attempts.count == 1 && log.attempts[0].status == 200)
    }

    @Test func aConnectFailureIsRetriedOnTheOtherNode() throws {
        var m = try machine()
        guard case .acquire(let first, _, _, let timeout) = m.event(.start, now: Self.t0).upstream else { throw Expectation.failed("no acquire") }
        #expect(timeout == .seconds(1))
        guard case .acquire(let second, _, _, _) = m.event(.upstreamConnectFailed(timedOut: false), now: Self.t0).upstream else {
            throw Expectation.failed("no retry")
        }
        #expect(first != second)
        // Both failed: 502, and both nodes are free.
        let last = m.event(.upstreamConnectFailed(timedOut: false), now: Self.t0)
        guard case .whole(let h, _, _) = last.downstream else { throw Expectation.failed("no answer") }
        #expect(h.status == 502)
        #expect(active(0) == 0 && active(1) == 0)
        let log = m.finishLog()
        #expect(log.map { l in Set(l.attempts.map { m.nodeAddress($0.node) }) } == ["10.0.0.1:80", "10.0.0.2:80"])
    }

    @Test func aConnectTimeoutIs504() throws {
        var m = try machine(#"{"routes":[{"id":"r","uri":"/*","upstream":{"nodes":{"10.0.0.1:80":1}}}]}"#)
        _ = m.event(.start, now: Self.t0)
        let a = m.event(.upstreamConnectFailed(timedOut: true), now: Self.t0)
        guard case .whole(let h, _, _) = a.downstream else { throw Expectation.failed("no answer") }
        #expect(h.status == 504)
    }

    @Test func anUpstreamClosingBeforeTheResponseIsRetriedElsewhere() throws {
        var m = try machine()
        _ = m.event(.start, now: Self.t0)
        _ = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        let first = try #require(m.heldNode)
        let a = m.event(.upstreamClosed, now: Self.t0)
        guard case .acquire(let key, _, let fresh, _) = a.upstream else { throw Expectation.failed("no retry") }
        #expect(!fresh && key.host == (first == 0 ? "10.0.0.2" : "10.0.0.1"))
        #expect(active(first) == 0)
    }

    @Test func aStalePooledConnectionIsRetriedOnceOnAFreshOne() throws {
        var m = try machine(#"{"routes":[{"id":"r","uri":"/*","upstream":{"nodes":{"10.0.0.1:80":1}}}]}"#)
        _ = m.event(.start, now: Self.t0)
        _ = m.event(.upstreamAcquired(reused: true), now: Self.t0)
        guard case .acquire(_, _, let fresh, _) = m.event(.upstreamClosed, now: Self.t0).upstream else { throw Expectation.failed("no retry") }
        #expect(fresh)
        _ = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        let a = m.event(.upstreamClosed, now: Self.t0)
        guard case .whole(let h, _, _) = a.downstream else { throw Expectation.failed("no 502") }
        #expect(h.status == 502)
    }

    @Test func anUpstreamClosingMidResponseCutsTheClient() throws {
        var m = try machine()
        _ = m.event(.start, now: Self.t0)
        _ = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        _ = m.event(.responseHead(ResponseHead(status: 200, fields: try HeaderBlock([("Content-Length", "10")]))), now: Self.t0)
        _ = m.event(.responseBody(ByteBuffer(string: "abc")), now: Self.t0)
        let a = m.event(.upstreamClosed, now: Self.t0)
        guard case .abort = a.downstream else { throw Expectation.failed("not aborted") }
        #expect(active(0) == 0 && active(1) == 0)
    }

    @Test func theReadTimeoutAnswers504BeforeAnyResponse() throws {
        var m = try machine()
        _ = m.event(.start, now: Self.t0)
        _ = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        #expect(m.nextDeadline == Self.t0 + .seconds(3))
        #expect(m.event(.timer, now: Self.t0 + .seconds(2)).downstream.isNone)
        let a = m.event(.timer, now: Self.t0 + .seconds(3))
        guard case .close = a.upstream, case .whole(let h, _, _) = a.downstream else { throw Expectation.failed("no timeout") }
        #expect(h.status == 504)
        #expect(active(0) == 0 && active(1) == 0)
    }

    @Test func aStalledRequestBodyIsAnswered408() throws {
        var m = try machine(head: try head(.POST, "/x", [("Content-Length", "10")]), framing: .length(10))
        _ = m.event(.start, now: Self.t0)
        _ = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        _ = m.event(.requestBody(ByteBuffer(string: "abc")), now: Self.t0 + .seconds(1))
        #expect(m.nextDeadline == Self.t0 + .seconds(61))
        let a = m.event(.timer, now: Self.t0 + .seconds(61))
        guard case .whole(let h, _, let close) = a.downstream, case .close = a.upstream else { throw Expectation.failed("no 408") }
        #expect(h.status == 408 && close)
    }

    @Test func expectContinueIsAnsweredWhenTheUpstreamIsReady() throws {
        var m = try machine(head: try head(.PUT, "/x", [("Content-Length", "3"), ("Expect", "100-continue")]), framing: .length(3))
        _ = m.event(.start, now: Self.t0)
        let a = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        guard case .sendContinue = a.downstream, case .send(let up, _, _, let end) = a.upstream else { throw Expectation.failed("no 100") }
        #expect(!end && up.sentFields.first(.expect) == nil)
        guard case .body = m.event(.requestBody(ByteBuffer(string: "abc")), now: Self.t0).upstream else { throw Expectation.failed("body") }
        guard case .end = m.event(.requestEnd, now: Self.t0).upstream else { throw Expectation.failed("end") }
    }

    @Test func aBodyArrivingWhileConnectingWaitsAndPausesReadsWhenLarge() throws {
        var m = try machine(head: try head(.POST, "/x", [("Content-Length", "100000")]), framing: .length(100_000))
        _ = m.event(.start, now: Self.t0)
        #expect(m.wantsClientReads)
        _ = m.event(.requestBody(ByteBuffer(repeating: 0x61, count: 70_000)), now: Self.t0)
        #expect(!m.wantsClientReads)
        let a = m.event(.upstreamAcquired(reused: false), now: Self.t0)
        guard case .send(_, let framing, let body, let end) = a.upstream else { throw Expectation.failed("no send") }
        #expect(framing == .length(100_000) && body.count == 1 && !end)
        #expect(m.wantsClientReads)
        _ = m.event(.upstreamWritable(false), now: Self.t0)
        #expect(!m.wantsClientReads)
    }

    @Test func aRouteMissIs404AndAHEADAnswerHasNoBody() throws {
        var m = try machine(#"{"routes":[{"id":"r","uri":"/only","upstream":{"nodes":{"10.0.0.1:80":1}}}]}"#, head: try head(.HEAD, "/x"))
        let a = m.event(.start, now: Self.t0)
        guard case .whole(let h, let body, _) = a.downstream, case .finished = a.completion else { throw Expectation.failed("no 404") }
        #expect(h.status == 404 && body == nil && h.fields.first(.contentLength) != "0")
    }

    @Test func aPluginReplyRunsTheHeaderFilters() throws {
        let config = #"""
            {"routes":[{"id":"r","uri":"/*","plugins":{"key-auth":{},"response-rewrite":{"headers":{"set":{"X-Seen":"yes"}}}},
              "upstream":{"nodes":{"10.0.0.1:80":1}}}]}
            """#
        var m = try machine(config)
        let a = m.event(.start, now: Self.t0)
        guard case .whole(let h, _, _) = a.downstream else { throw Expectation.failed("no reply") }
        #expect(h.status == 401)
        #expect(h.fields.first(name: "x-seen") == "yes")
        #expect(balancers.byKey.isEmpty)  // no upstream was picked
    }

    @Test func aPluginHeaderWithCRLFIsRefusedNotForwarded() throws {
        let config = #"{"routes":[{"id":"r","uri":"/*","plugins":{"request-id":{}},"upstream":{"nodes":{"10.0.0.1:80":1}}}]}"#
        var m = try machine(config)
        // What a plugin left in the request's headers: a value that would split the head.
        m.plugins?.request.headers.add(name: "X-Bad", value: "a\r\nInjected: 1")
        let a = m.event(.start, now: Self.t0)
        guard case .whole(let h, _, _) = a.downstream else { throw Expectation.failed("forwarded") }
        #expect(h.status == 400)
        guard case .none = a.upstream else { throw Expectation.failed("an upstream was contacted") }
    }

    @Test func aSwitchingProtocolsResponseStartsATunnelWithTheReadTimeout() throws {
        let config = #"{"routes":[{"id":"r","uri":"/*","enable_websocket":true,"timeout":{"connect":1,"send":1,"read":7},"upstream":{"nodes":{"10.0.0.1:80":1}}}]}"#
        var m = try machine(config, head: try head(.GET, "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")]))
        _ = m.event(.start, now: Self.t0)
        guard case .send(let up, _, _, _) = m.event(.upstreamAcquired(reused: false), now: Self.t0).upstream else { throw Expectation.failed("send") }
        #expect(up.sentFields.first(.upgrade) == "websocket" && up.sentFields.first(.connection) == "upgrade")
        _ = m.event(.responseHead(ResponseHead(status: 101, fields: try HeaderBlock([("Upgrade", "websocket"), ("Connection", "Upgrade")]))), now: Self.t0)
        let a = m.event(.responseEnd(nil), now: Self.t0)
        guard case .tunnel(let h, let idle) = a.completion else { throw Expectation.failed("no tunnel") }
        #expect(h.status == 101 && idle == .seconds(7))
        #expect(active(0) == 0)
    }
}

extension ExchangeActions.Downstream {
    var isNone: Bool {
        if case .none = self { return true }
        return false
    }
}

enum Expectation: Error {
    case failed(String)
}
