import Foundation
import SluiceCore
import SluiceProxy
import Testing

/// Seeded random mutation fuzzing of what parses input from outside: the JSON parser, the
/// config decoders and validators (every object kind, every plugin), the compiler, and the
/// request-path normalizer. The corpus is in `FuzzCorpus/`; each target runs for a bounded
/// count and time, and a run is the same on every machine (fixed seed). A trap fails the
/// whole test process, so reaching the end is the property; the others are asserted.
///
/// `SLUICE_FUZZ_SECONDS` and `SLUICE_FUZZ_SEED` make longer or different runs.
@Suite struct FuzzTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("FuzzCorpus")

    static func seeds(_ folder: String) throws -> [[UInt8]] {
        let dir = corpus.appendingPathComponent(folder)
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        return try names.map { Array(try Data(contentsOf: dir.appendingPathComponent($0))) }
    }

    static var budget: Duration {
        .seconds(Int(ProcessInfo.processInfo.environment["SLUICE_FUZZ_SECONDS"] ?? "") ?? 8)
    }
    static var seed: UInt64 { UInt64(ProcessInfo.processInfo.environment["SLUICE_FUZZ_SEED"] ?? "") ?? 0x5EED }

    /// Tokens that reach the interesting edges of parsers and validators.
    static let dictionary: [[UInt8]] = [
        "1e19", "-1e308", "1e308", "9223372036854775807", "9223372036854775808", "18446744073709551616", "2147483648", "-1", "0",
        "1e-9", "0.5", "\"\\u0000\"", "\"\\r\\n\"", "\"\\ud800\"", "[", "]", "{", "}", "\"", ",", ":", "null", "true", "[[[[[[[[",
        "\"(a+)+$\"", "\"$arg_x\"", "\"$http_key\"", "%00", "%0D%0A", "/../", "/./", "%2e%2e", "%2F", "//", "?", "#", "::ffff:1.2.3.4",
        "\"*\"", "\"**\"", "\"a\"", "\"\\\\\"", "\"_meta\"", "\"disable\"",
    ].map { Array($0.utf8) }

    struct Mutator {
        var rng: SplitMix
        let seeds: [[UInt8]]

        mutating func next() -> [UInt8] {
            var b = seeds[rng.next(seeds.count)]
            for _ in 0..<(1 + rng.next(4)) {
                switch rng.next(7) {
                case 0 where !b.isEmpty:  // flip a byte
                    b[rng.next(b.count)] = UInt8(truncatingIfNeeded: rng.next(256))
                case 1 where !b.isEmpty:  // delete a range
                    let i = rng.next(b.count)
                    b.removeSubrange(i..<min(b.count, i + 1 + rng.next(16)))
                case 2:  // insert a token
                    let t = FuzzTests.dictionary[rng.next(FuzzTests.dictionary.count)]
                    b.insert(contentsOf: t, at: rng.next(b.count + 1))
                case 3 where !b.isEmpty:  // replace a number-looking run with a token
                    let i = rng.next(b.count)
                    var j = i
                    while j < b.count, (b[j] >= 0x30 && b[j] <= 0x39) || b[j] == 0x2E || b[j] == 0x2D { j += 1 }
                    b.replaceSubrange(i..<j, with: FuzzTests.dictionary[rng.next(9)])
                case 4 where b.count > 1:  // duplicate a chunk
                    let i = rng.next(b.count)
                    let chunk = Array(b[i..<min(b.count, i + 1 + rng.next(64))])
                    b.insert(contentsOf: chunk, at: rng.next(b.count + 1))
                case 5:  // splice with another seed
                    let other = seeds[rng.next(seeds.count)]
                    let cut = rng.next(b.count + 1)
                    b = Array(b[..<cut]) + Array(other[rng.next(other.count + 1)...])
                default:  // a random byte
                    b.insert(UInt8(truncatingIfNeeded: rng.next(256)), at: rng.next(b.count + 1))
                }
            }
            return b
        }
    }

    /// Runs `body` on mutated inputs until the count or the time budget runs out.
    static func run(_ folder: String, count: Int, _ body: ([UInt8]) throws -> Void) throws -> Int {
        var m = Mutator(rng: SplitMix(state: seed), seeds: try seeds(folder))
        #expect(!m.seeds.isEmpty)
        for s in m.seeds { try body(s) }
        let deadline = ContinuousClock.now + budget
        var n = 0
        while n < count, ContinuousClock.now < deadline {
            try body(m.next())
            n += 1
        }
        return n
    }

    /// JSON: anything parses or is refused with an error; what parses serializes and parses
    /// back to the same value.
    @Test func jsonParser() throws {
        let n = try Self.run("config", count: 200_000) { bytes in
            guard let v = try? JSONValue.parse(bytes) else { return }
            let again = try JSONValue.parse(v.serializedBytes())
            // An integral double (`1e0`) is written as `1` and read back as an integer.
            #expect(Self.numbersAsDoubles(again) == Self.numbersAsDoubles(v), "round trip changed \(String(decoding: bytes.prefix(200), as: UTF8.self))")
        }
        #expect(n > 1000)
    }

    static func numbersAsDoubles(_ v: JSONValue) -> JSONValue {
        switch v {
        case .int(let i): return .double(Double(i))
        case .array(let a): return .array(a.map(numbersAsDoubles))
        case .object(let o): return .object(o.mapValues(numbersAsDoubles))
        default: return v
        }
    }

    /// Config: every object in a mutated document is decoded and validated as the Admin API
    /// does it; what validates compiles on its own, and the whole valid set compiles.
    @Test func configDecodersAndCompiler() throws {
        let n = try Self.run("config", count: 50_000) { bytes in
            guard let doc = try? JSONValue.parse(bytes), case .object = doc else { return }
            var state = ConfigState()
            for o in DeclarativeConfig.objects(doc) {
                var scratch = ConfigState()
                guard (try? scratch.set(o.kind, id: o.id, value: o.value)) != nil else { continue }
                do throws(ConfigError) {
                    try SnapshotCompiler.trialCompile(o.kind, id: o.id, scratch: scratch)
                } catch {
                    Issue.record("validated but did not compile: \(error)")
                }
                try? state.set(o.kind, id: o.id, value: o.value)
            }
            _ = state.referenceErrors()
            _ = SnapshotCompiler().compile(state)
            _ = DeclarativeConfig.decode(doc)
        }
        #expect(n > 500)
    }

    /// Paths: every target is normalized or refused; a normalized path starts with `/`, has
    /// no empty, `.` or `..` segment, and normalizes to itself.
    @Test func pathNormalizer() throws {
        let n = try Self.run("paths", count: 200_000) { bytes in
            let target = String(decoding: bytes, as: UTF8.self)
            guard case .success(let p) = RequestPath.normalize(target) else { return }
            // On bytes: a combining mark after `/` is not part of the separator.
            let bytes = Array(p.path.utf8)
            #expect(bytes.first == UInt8(ascii: "/"), "\(target) → \(p.path)")
            let segments = bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropFirst()
            #expect(!segments.dropLast().contains(where: { $0.isEmpty || $0.elementsEqual([0x2E]) || $0.elementsEqual([0x2E, 0x2E]) }), "\(target) → \(p.path)")
            if case .success(let again) = RequestPath.normalize(p.path) {
                #expect(again.path == p.path, "\(target) → \(p.path) → \(again.path)")
            } else {
                Issue.record("\(target) → \(p.path) is refused when normalized again")
            }
        }
        #expect(n > 1000)
    }
}
