@testable import KubeClient
import SluiceCore
import Synchronization
import Testing

/// What the API server (or whoever wrote an object) sends cannot make the client trap:
/// durations, times, Lease arithmetic, endpoint ports and addresses at their extremes.
@Suite struct HostileInputTests {
    // MARK: - Go durations

    @Test(arguments: [
        ("0", Int64(0)), ("-0", 0), ("+0", 0), ("0s", 0), ("5s", 5_000_000_000), ("1m30s", 90_000_000_000), ("1h0m0s", 3_600_000_000_000),
        ("1h2m3.5s", 3_723_500_000_000), ("300ms", 300_000_000), ("1.5us", 1_500), ("1.5µs", 1_500), ("1.5μs", 1_500), ("7ns", 7),
        ("-1s", -1_000_000_000), ("+2s", 2_000_000_000), (".5s", 500_000_000), ("5.s", 5_000_000_000), ("1.5h", 5_400_000_000_000),
        ("1h1h", 7_200_000_000_000), ("0.000000001s", 1), ("0.0000000001s", 0),
        // The extremes of an Int64 of nanoseconds, as Go reads them.
        ("2562047h47m16.854775807s", Int64.max), ("9223372036854775807ns", Int64.max), ("-9223372036854775808ns", Int64.min),
        ("-2562047h47m16.854775808s", Int64.min),
        // Fraction digits past what an Int64 holds are read and dropped.
        ("1.00000000000000000000000000000000000001s", 1_000_000_000),
    ])
    func goDurationsParseAsGoDoes(_ text: String, _ nanoseconds: Int64) throws {
        #expect(try KubeDuration.nanoseconds(text) == nanoseconds)
    }

    @Test(arguments: [
        "", "-", "+", "5", "s", ".", ".s", "-.s", "5 s", " 5s", "5s ", "1e5s", "5S", "5sec", "1d", "inf", "nan", "NaN", "0x10s", "1,5s", "5s\r\n",
        "5s\u{0}", "5\u{0}s", "١s",  // an Arabic-Indic digit is not a digit here
        "99999999999999999999h", "9223372036854775808ns", "2562047h47m16.854775808s", "2562048h", "-9223372036854775809ns",
        "18446744073709551616ns", "1000000000000000000000000000000s", "106751d", "5000000000000h", "9223372036854775807s",
    ])
    func malformedOrOutOfRangeDurationsAreErrors(_ text: String) {
        #expect(throws: KubeDuration.ParseError.self) { try KubeDuration.nanoseconds(text) }
        #expect(KubeDuration.seconds(text) == nil)
    }

    @Test func hugeAndOddInputDoesNotTrap() {
        let digits = String(repeating: "9", count: 65_536)
        #expect((try? KubeDuration.nanoseconds(digits + "s")) == nil)
        let long = try? KubeDuration.nanoseconds("1." + digits + "s")  // the fraction's first 18 digits count
        #expect((1_999_999_999...2_000_000_000).contains(long ?? 0))
        #expect((try? KubeDuration.nanoseconds(String(repeating: "1s", count: 32_768))) == 32_768_000_000_000)
        #expect((try? KubeDuration.nanoseconds(String(repeating: "1h", count: 3_000_000))) == nil)  // sum overflows
        #expect((try? KubeDuration.nanoseconds("1" + String(repeating: "x", count: 65_536))) == nil)
        let e = #expect(throws: KubeDuration.ParseError.self) { try KubeDuration.nanoseconds("1" + String(repeating: "x", count: 100)) }
        #expect((e?.reason.utf8.count ?? 0) < 120)  // the unit is quoted cut short
    }

    @Test func durationsFormatAsGoDoes() throws {
        for (ns, text) in [
            (Int64(0), "0s"), (1, "1ns"), (1_500, "1.5µs"), (300_000_000, "300ms"), (1_000_000_000, "1s"), (90_000_000_000, "1m30s"),
            (3_723_500_000_000, "1h2m3.5s"), (86_400_000_000_000, "24h0m0s"), (-1_000_000_000, "-1s"),
            (Int64.max, "2562047h47m16.854775807s"), (Int64.min, "-2562047h47m16.854775808s"),
        ] {
            #expect(KubeDuration.format(nanoseconds: ns) == text)
            #expect(try KubeDuration.nanoseconds(text) == ns)
        }
    }

    // MARK: - Times

    @Test(arguments: [Int64.min, Int64.min + 1, -1, 0, Int64.max - 1, Int64.max])
    func anyMicroTimeFormatsToTextThatParses(_ micros: Int64) throws {
        let text = KubeTime.microTime(epochMicroseconds: micros)
        let back = try #require(KubeTime.parse(text))
        #expect(back >= KubeTime.earliestSeconds * 1_000_000)
        #expect(back <= KubeTime.latestSeconds * 1_000_000 + 999_999)
        let t = KubeTime.time(epochSeconds: micros)
        #expect(KubeTime.parse(t) != nil)
    }

    @Test func extremeRFC3339TimesParseWithoutTrapping() {
        #expect(KubeTime.parse("0000-01-01T00:00:00Z") == KubeTime.earliestSeconds * 1_000_000)
        #expect(KubeTime.parse("9999-12-31T23:59:59.999999Z") == KubeTime.latestSeconds * 1_000_000 + 999_999)
        #expect(KubeTime.parse("9999-12-31T23:59:60-23:59") != nil)
        #expect(KubeTime.parse("2026-01-01T00:00:00." + String(repeating: "9", count: 65_536) + "Z") != nil)
        #expect(KubeTime.parse("99999-01-01T00:00:00Z") == nil)
        #expect(KubeTime.parse("2026-01-01T00:00:00\u{0}Z") == nil)
        #expect(KubeTime.parse("") == nil)
    }

    @Test func leaseExpiryOverflowsToUnknownNotATrap() throws {
        func expiry(_ renew: String, _ seconds: Int) throws -> Int64? {
            try Lease(json: ["metadata": ["name": "l"], "spec": ["renewTime": .string(renew), "leaseDurationSeconds": .int(Int64(seconds))]])
                .expiresAtMicroseconds
        }
        let late = "9999-12-31T23:59:59.999999Z", early = "0000-01-01T00:00:00Z"
        #expect(try expiry(late, Int.max) == nil)
        #expect(try expiry(early, Int.min) == nil)
        #expect(try expiry(late, Int(Int32.max)) == KubeTime.parse(late)! + Int64(Int32.max) * 1_000_000)
        #expect(try expiry(early, -1) == KubeTime.parse(early)! - 1_000_000)
        #expect(try expiry(late, 0) == KubeTime.parse(late))
    }

    @Test func leaseFieldsOfAnyIntegerDecode() throws {
        let l = try Lease(json: [
            "metadata": ["name": "l"],
            "spec": ["leaseDurationSeconds": .int(Int64.max), "leaseTransitions": .int(Int64.min), "renewTime": "garbage"],
        ])
        #expect(l.spec.leaseDurationSeconds == Int.max)
        #expect(l.expiresAtMicroseconds == nil)
        // A float with no fraction past 2^53 is not taken as an integer (nor trapped on).
        #expect(throws: KubeDecodingError.self) { try Lease(json: ["metadata": ["name": "l"], "spec": ["leaseDurationSeconds": .double(1e19)]]) }
        #expect(throws: KubeDecodingError.self) { try Lease(json: ["metadata": ["name": "l"], "spec": ["leaseDurationSeconds": .double(1e308)]]) }
    }

    // MARK: - Endpoints

    @Test func endpointsWithPortsOrAddressesNoNodeCanHaveAreSkipped() throws {
        let http = Service.Port(name: "http", port: 80, targetPort: .number(8080), protocol: "TCP", appProtocol: nil)
        func slice(_ name: String, port: Int64, addresses: [String]) throws -> EndpointSlice {
            try EndpointSlice(json: [
                "metadata": ["name": .string(name), "namespace": "default", "labels": ["kubernetes.io/service-name": "web"]],
                "addressType": "IPv4", "ports": [["name": "http", "port": .int(port)]],
                "endpoints": [["addresses": .array(addresses.map { .string($0) })]],
            ])
        }
        let slices = [
            try slice("a", port: 0, addresses: ["10.0.0.1"]), try slice("b", port: -1, addresses: ["10.0.0.2"]),
            try slice("c", port: 65_536, addresses: ["10.0.0.3"]), try slice("d", port: Int64.max, addresses: ["10.0.0.4"]),
            try slice("e", port: 8080, addresses: ["10.0.0.5", "10.0.0.6\r\nX-Evil: 1", "", "evil.example.com", String(repeating: "1", count: 64), "fd00::7"]),
        ]
        #expect(EndpointMerger.endpoints(for: http, in: slices) == [
            BackendEndpoint(address: "10.0.0.5", port: 8080), BackendEndpoint(address: "fd00::7", port: 8080),
        ])
        let legacy = try Endpoints(json: [
            "metadata": ["name": "web", "namespace": "default"],
            "subsets": [
                ["addresses": [["ip": "10.0.0.1"]], "ports": [["name": "http", "port": 70_000]]],
                ["addresses": [["ip": "10.0.0.2"], ["ip": "bad host"]], "ports": [["name": "http", "port": 8080]]],
            ],
        ])
        #expect(EndpointMerger.endpoints(for: http, in: legacy) == [BackendEndpoint(address: "10.0.0.2", port: 8080)])
    }

    // MARK: - Informer retention

    static func api() -> KubeAPI {
        KubeAPI(KubeConnection(
            server: "http://127.0.0.1:1", scheme: "http", host: "127.0.0.1", port: 1, basePath: "", certificateAuthorityPEM: nil,
            insecureSkipTLSVerify: false, auth: .bearer("t"), namespace: "default"))
    }

    static func secret(_ name: String, rv: String, data: [String: String]) -> JSONValue {
        [
            "metadata": ["name": .string(name), "namespace": "default", "resourceVersion": .string(rv), "labels": ["app": "x"]],
            "type": "kubernetes.io/tls", "data": .object(data.mapValues { .string(Base64.encode($0)) }),
        ]
    }

    @Test func anInformerWithAStubRetentionKeepsNoSecretData() async throws {
        let informer = Informer(api: Self.api(), resource: .secrets(namespace: nil), retain: Informer.stub)
        let seen = Mutex<[Informer.Event]>([])
        let handler: @Sendable (Informer.Event) async -> Void = { e in seen.withLock { $0.append(e) } }
        _ = await informer.receive(.added(Self.secret("a", rv: "1", data: ["tls.key": "PRIVATE-A"])), handler)
        _ = await informer.receive(.modified(Self.secret("a", rv: "2", data: ["tls.key": "PRIVATE-A2"])), handler)
        _ = await informer.receive(.added(Self.secret("b", rv: "3", data: ["tls.key": "PRIVATE-B"])), handler)
        let cache = await informer.cache
        #expect(cache.count == 2)
        for (_, o) in cache {
            #expect(o["data"] == nil)
            #expect(!o.serialized().contains("PRIVATE"))
            #expect(o["metadata"]?["resourceVersion"] != nil)
            #expect(o["type"] == "kubernetes.io/tls")
        }
        #expect(cache["default/a"]?["metadata"]?["labels"]?["app"] == "x")
        // The handler still sees every added and updated object whole; old values are stubs.
        let events = seen.withLock { $0 }
        #expect(events.count == 3)
        if case .updated(let old, let new) = events[1] {
            #expect(old["data"] == nil)
            #expect(new["data"]?["tls.key"] == .string(Base64.encode("PRIVATE-A2")))
        } else {
            Issue.record("expected an update, got \(events[1])")
        }
        _ = await informer.receive(.deleted(Self.secret("b", rv: "4", data: ["tls.key": "PRIVATE-B"])), handler)
        #expect(await informer.cache.count == 1)
        if case .deleted(let old) = seen.withLock({ $0 }).last { #expect(old["data"] == nil) } else { Issue.record("expected a deletion") }
    }

    @Test func anInformerWithoutRetentionKeepsObjectsWhole() async throws {
        let informer = Informer(api: Self.api(), resource: .secrets(namespace: nil))
        _ = await informer.receive(.added(Self.secret("a", rv: "1", data: ["k": "v"])), { _ in })
        #expect(await informer.cache["default/a"]?["data"]?["k"] == .string(Base64.encode("v")))
    }

    @Test func aSecretRetainsOnlyTheKeysItsReadersNeed() throws {
        let s = try Secret(json: Self.secret("a", rv: "1", data: ["tls.crt": "C", "tls.key": "K", "extra": "E"]))
        let kept = s.retaining(keys: ["tls.crt", "tls.key"])
        #expect(kept.string("tls.crt") == "C")
        #expect(kept.string("tls.key") == "K")
        #expect(kept.value("extra") == nil)
        #expect(kept.encodedData.isEmpty)
        #expect(!kept.raw.serialized().contains(Base64.encode("K")))
        #expect(s.retaining(keys: nil).string("extra") == "E")
    }
}
