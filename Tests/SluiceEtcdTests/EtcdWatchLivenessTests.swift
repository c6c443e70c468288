import NIOCore
import NIOPosix
import SluiceCore
import SluiceTesting
import Synchronization
import Testing

@testable import SluiceEtcd

#if canImport(Glibc)
import Glibc
#endif

/// The watch's liveness against a real etcd 3.4: progress notifications, the probe, the idle
/// deadline, TCP keepalive. Short intervals, generous deadlines: nothing here may depend on
/// the machine being idle.
@Suite struct EtcdWatchLivenessTests {
    static let group = MultiThreadedEventLoopGroup.singleton

    static func client(_ url: String, _ liveness: EtcdWatchLiveness) throws -> EtcdClient {
        EtcdClient(endpoints: [try #require(EtcdEndpoint(url: url))], group: group, watchLiveness: liveness)
    }

    /// Reads `stream` until `duration` has passed (then stops it) or the stream ends;
    /// `until`: stop early once a message satisfies it.
    static func observe(
        _ stream: AsyncThrowingStream<EtcdWatchMessage, Error>, for duration: Duration,
        until stop: @escaping @Sendable (EtcdWatchMessage) -> Bool = { _ in false }
    ) async -> (messages: [EtcdWatchMessage], ended: Error?, endedAfter: Duration?) {
        let start = ContinuousClock.now
        let box = Observed()
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                do {
                    for try await m in stream {
                        box.state.withLock { $0.messages.append(m) }
                        if stop(m) { return }
                    }
                    if !Task.isCancelled {
                        let e = EtcdError(.unavailable, "the stream finished")
                        box.state.withLock { $0.ended = (e, ContinuousClock.now - start) }
                    }
                } catch {
                    box.state.withLock { $0.ended = (error, ContinuousClock.now - start) }
                }
            }
            tasks.addTask { try? await Task.sleep(for: duration) }
            await tasks.next()
            tasks.cancelAll()
        }
        return box.state.withLock { ($0.messages, $0.ended?.0, $0.ended?.1) }
    }

    final class Observed: Sendable {
        struct State {
            var messages: [EtcdWatchMessage] = []
            var ended: (Error, Duration)?
        }
        let state = Mutex(State())
    }

    static func isCreated(_ m: EtcdWatchMessage) -> Bool { if case .created = m { true } else { false } }

    static func silence(_ error: Error?) -> Bool? {
        guard let e = error as? EtcdError, case .watchSilent(let answered) = e.code else { return nil }
        return answered
    }

    @Test func progressNotificationsKeepAQuietWatchAliveAndCarryTheRevision() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group, extraArguments: ["--experimental-watch-progress-notify-interval", "300ms"])
        // No probes: only etcd's progress notifications can keep this watch alive.
        let client = try Self.client(etcd.url, EtcdWatchLiveness(idleTimeout: .seconds(2), probeInterval: nil))
        let other = try #require(try await client.put("/other/x", Array("1".utf8), ifModRevision: nil))  // outside the prefix
        let stream = client.watch(prefix: "/apisix/", fromRevision: 1)
        // Three idle timeouts of a watch on which no event happens.
        let (messages, ended, _) = await Self.observe(stream, for: .seconds(6))
        #expect(ended == nil, "the watch ended: \(String(describing: ended))")
        let progress = messages.compactMap { if case .progress(let r) = $0 { r } else { nil } }
        #expect(progress.count >= 5, "\(messages)")
        #expect(progress.allSatisfy { $0 >= other.modRevision })
        await etcd.remove()
    }

    @Test func aProbeKeepsAQuietWatchAliveWithoutProgressNotifications() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let client = try Self.client(
            etcd.url, EtcdWatchLiveness(idleTimeout: .seconds(2), probeInterval: .milliseconds(200), probeTimeout: .seconds(1), progressNotify: false))
        let (messages, ended, _) = await Self.observe(client.watch(prefix: "/apisix/", fromRevision: 1), for: .seconds(6))
        #expect(ended == nil, "a healthy quiet watch was ended: \(String(describing: ended))")
        #expect(messages.count == 1 && messages.first.map(Self.isCreated) == true, "\(messages)")
        await etcd.remove()
    }

    @Test func aProbeThatSeesTheStoreMoveOnDoesNotConfirmTheWatch() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let client = try Self.client(
            etcd.url, EtcdWatchLiveness(idleTimeout: .seconds(2), probeInterval: .milliseconds(200), probeTimeout: .seconds(1), progressNotify: false))
        let stream = client.watch(prefix: "/apisix/", fromRevision: 1)
        let (first, _, _) = await Self.observe(stream, for: .seconds(20), until: Self.isCreated)
        #expect(first.contains(where: Self.isCreated))
        // A write the watch does not report (outside its prefix): the probe's revision is now
        // newer than the watch's, so only the watch itself could vouch for it.
        _ = try await client.put("/other/y", Array("1".utf8), ifModRevision: nil)
        let (_, ended, after) = await Self.observe(stream, for: .seconds(30))
        #expect(Self.silence(ended) == true, "\(String(describing: ended))")  // the member did answer
        #expect((after ?? .zero) >= .milliseconds(1500))
        await etcd.remove()
    }

    @Test func aWatchOnAConnectionThatStopsAnsweringEndsAsSilent() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let relay = try await TCPRelay.start(to: etcd.clientPort, group: Self.group)
        let client = try Self.client(
            relay.url, EtcdWatchLiveness(idleTimeout: .seconds(2), probeInterval: .milliseconds(300), probeTimeout: .milliseconds(700)))
        let stream = client.watch(prefix: "/apisix/", fromRevision: 1)
        let (first, firstEnd, _) = await Self.observe(stream, for: .seconds(20), until: Self.isCreated)
        #expect(first.contains(where: Self.isCreated), "\(String(describing: firstEnd))")
        let frozenAt = ContinuousClock.now
        await relay.freeze()
        let (_, ended, _) = await Self.observe(stream, for: .seconds(30))
        let detected = ContinuousClock.now - frozenAt
        #expect(Self.silence(ended) == false, "\(String(describing: ended))")  // the probe got no answer either
        #expect(detected >= .milliseconds(1500) && detected < .seconds(20), "\(detected)")
        await relay.stop()
        await etcd.remove()
    }

    @Test func theWatchSocketHasTCPKeepalive() async throws {
        let etcd = try await EtcdTestServer.start(group: Self.group)
        let liveness = EtcdWatchLiveness(keepalive: TCPKeepalive(idle: .seconds(7), interval: .seconds(2), count: 4)).effective
        let channel = try await WatchConnection.bootstrap(group: Self.group, liveness: liveness).connect(host: "127.0.0.1", port: etcd.clientPort).get()
        #expect(try await channel.getOption(ChannelOptions.socketOption(.so_keepalive)).get() != 0)
        #if os(Linux)
        func tcp(_ name: CInt) async throws -> Int {
            try await channel.getOption(ChannelOptions.Types.SocketOption(level: .tcp, name: NIOBSDSocket.Option(rawValue: name))).get()
        }
        #expect(try await tcp(TCP_KEEPIDLE) == 7)
        #expect(try await tcp(TCP_KEEPINTVL) == 2)
        #expect(try await tcp(TCP_KEEPCNT) == 4)
        #expect(try await tcp(TCPKeepalive.tcpUserTimeout) == 15_000)
        #endif
        try await channel.close()
        await etcd.remove()
    }

    @Test func extremeKeepaliveAndDurationsAreClampedNotTrapped() {
        let k = TCPKeepalive(idle: .seconds(Int64.max), interval: .zero, count: .max)
        let values = k.socketOptions.map(\.1)
        #expect(values.allSatisfy { $0 >= 1 })
        #expect(Duration.seconds(Int64.max).timeAmount == .nanoseconds(.max))
        #expect(Duration.seconds(Int64.min).timeAmount == .nanoseconds(.min))
        let l = EtcdWatchLiveness(idleTimeout: .zero, probeInterval: .zero, probeTimeout: .seconds(99)).effective
        #expect(l.idleTimeout >= .milliseconds(10) && l.probeTimeout <= l.idleTimeout)
    }

    @Test func nothingEtcdSendsOnAWatchTraps() {
        func parse(_ s: String) -> WatchMessageParser.Parsed { WatchMessageParser.parse(Array(s.utf8)) }
        let good = Base64.encode("/apisix/routes/1"), value = Base64.encode("{}")
        // Revisions beyond Int64, negative or not numbers at all: absent, no trap.
        for r in [#""99999999999999999999999""#, #""-5""#, #""x""#, "1e300", "-1", "null", "[]"] {
            let p = parse(#"{"result":{"header":{"revision":\#(r)},"events":[{"kv":{"key":"\#(good)","value":"\#(value)","mod_revision":\#(r),"create_revision":\#(r)}}]}}"#)
            #expect(p.ending == nil)
            #expect(p.revision == nil || p.revision! > 0)
        }
        // Keys and values that are not base64 are reported, the rest of the batch applied.
        let p = parse(
            #"{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"!!","value":"\#(value)"}},{"kv":{"key":"\#(good)","value":"%%%"}},{"type":"DELETE"},{"kv":{"key":"\#(good)","value":"\#(value)","mod_revision":"9"}}]}}"#)
        var undecodable = 0, events = 0
        for m in p.messages {
            if case .undecodable(let reasons, _) = m { undecodable = reasons.count }
            if case .events(let e, let r) = m {
                events = e.count
                #expect(r == 9)
            }
        }
        #expect(undecodable == 3)
        #expect(events == 1)
        // A compaction with a garbage compact revision is a cancel, not a trap.
        #expect(parse(#"{"result":{"canceled":true,"compact_revision":"zz"}}"#).ending != nil)
        #expect(parse(#"{"result":{"canceled":true,"compact_revision":"12"}}"#).messages.count == 1)
        #expect(parse("not json").ending != nil)
        #expect(parse(#"{"result":{"header":{"revision":"4"}}}"#).messages.count == 1)  // progress
        // An endpoint with a port NIO cannot take is refused, not trapped on.
        #expect(EtcdEndpoint(url: "http://127.0.0.1:99999") == nil)
        #expect(EtcdEndpoint(url: "http://127.0.0.1:0") == nil)
        #expect(throws: EtcdError.self) { try EtcdEndpoint(host: "127.0.0.1", port: 70000).checkConnectable() }
    }

    @Test func aClientWithoutEndpointsFailsInsteadOfTrapping() async throws {
        let client = EtcdClient(endpoints: [], group: Self.group)
        await #expect(throws: EtcdError.self) { _ = try await client.revision() }
        let (_, ended, _) = await Self.observe(client.watch(prefix: "/apisix/", fromRevision: 1), for: .seconds(5))
        #expect(ended != nil)
    }
}
