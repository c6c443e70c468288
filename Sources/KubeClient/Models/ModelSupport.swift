#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import SluiceCore

// MARK: - More lenient readers

extension KubeFields {
    /// The object at `key`, or an empty one carrying the same path when the key is absent,
    /// so that optional sections read as "every field absent".
    func objectOrEmpty(_ key: String) throws(KubeDecodingError) -> KubeFields {
        if let o = try object(key) { return o }
        return try KubeFields(.object([:]), sub(key))
    }

    func requiredObject(_ key: String) throws(KubeDecodingError) -> KubeFields {
        guard let o = try object(key) else { throw KubeDecodingError(sub(key), "is required") }
        return o
    }

    /// Each item of the list at `key`, which must be objects; paths are `key[i]`.
    func objects(_ key: String) throws(KubeDecodingError) -> [KubeFields] {
        var out: [KubeFields] = []
        for (i, item) in try array(key).enumerated() { out.append(try KubeFields(item, "\(sub(key))[\(i)]")) }
        return out
    }

    func requiredInt(_ key: String) throws(KubeDecodingError) -> Int {
        guard let i = try int(key) else { throw KubeDecodingError(sub(key), "is required") }
        return i
    }

    /// An integer or a fractional number.
    func number(_ key: String) throws(KubeDecodingError) -> Double? {
        guard let v = value[key], v != .null else { return nil }
        guard let d = v.doubleValue else { throw KubeDecodingError(sub(key), "must be a number") }
        return d
    }

    func ints(_ key: String) throws(KubeDecodingError) -> [Int] {
        var out: [Int] = []
        for (i, item) in try array(key).enumerated() {
            guard let n = item.intValue else { throw KubeDecodingError("\(sub(key))[\(i)]", "must be an integer") }
            out.append(Int(n))
        }
        return out
    }

    /// Any JSON value, as given; nil when absent or null.
    func json(_ key: String) -> JSONValue? {
        guard let v = value[key], v != .null else { return nil }
        return v
    }

    /// A string that must be one of the cases of `E`.
    func enumeration<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(KubeDecodingError) -> E? where E.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let e = E(rawValue: s) else {
            let names = E.allCases.map(\.rawValue)
            let list = names.count > 1 ? names.dropLast().joined(separator: ", ") + " or " + names.last! : names.joined()
            throw KubeDecodingError(sub(key), "must be \(list), got \"\(s)\"")
        }
        return e
    }

    /// A port given as a number or as the name of a Service port (`IntOrString`).
    func portReference(_ key: String) throws(KubeDecodingError) -> ServicePortReference? {
        switch value[key] {
        case nil, .null?: return nil
        case .string(let s)?: return ServicePortReference(s)
        case let v?:
            guard let n = v.intValue else { throw KubeDecodingError(sub(key), "must be a port number or name") }
            return .number(Int(n))
        }
    }
}

// MARK: - Shared value types

/// A port of a Service, named by number or by name (Kubernetes `IntOrString`).
public enum ServicePortReference: Sendable, Hashable, CustomStringConvertible {
    case number(Int)
    case name(String)

    /// A string made only of digits is a number: Service port names must contain a letter,
    /// so "80" can only mean port 80.
    public init(_ text: String) {
        if !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let n = Int(text) {
            self = .number(n)
        } else {
            self = .name(text)
        }
    }

    public var description: String {
        switch self {
        case .number(let n): return String(n)
        case .name(let s): return s
        }
    }

    public var json: JSONValue {
        switch self {
        case .number(let n): return .int(Int64(n))
        case .name(let s): return .string(s)
        }
    }
}

/// `status` of a condition.
public enum ConditionStatus: String, Sendable, Hashable, CaseIterable {
    case `true` = "True"
    case `false` = "False"
    case unknown = "Unknown"
}

/// meta/v1 `Condition`, the standard status entry of custom resources.
///
/// The API server requires `reason` (non-empty, CamelCase), `message` (may be empty) and
/// `lastTransitionTime` on writes; when decoding a condition someone else wrote, missing
/// strings read as "".
public struct KubeCondition: Sendable, Hashable {
    public var type: String
    public var status: ConditionStatus
    public var reason: String
    public var message: String
    public var observedGeneration: Int?
    /// RFC 3339, e.g. "2026-01-02T03:04:05Z".
    public var lastTransitionTime: String

    public init(
        type: String, status: ConditionStatus, reason: String, message: String = "", observedGeneration: Int? = nil, lastTransitionTime: String
    ) {
        self.type = type
        self.status = status
        self.reason = reason
        self.message = message
        self.observedGeneration = observedGeneration
        self.lastTransitionTime = lastTransitionTime
    }

    init(_ f: KubeFields) throws(KubeDecodingError) {
        type = try f.requiredString("type")
        guard let s = try f.enumeration("status", ConditionStatus.self) else { throw KubeDecodingError(f.sub("status"), "is required") }
        status = s
        reason = try f.string("reason") ?? ""
        message = try f.string("message") ?? ""
        observedGeneration = try f.int("observedGeneration")
        lastTransitionTime = try f.string("lastTransitionTime") ?? ""
    }

    public func json() -> JSONValue {
        var o: [String: JSONValue] = [
            "type": .string(type), "status": .string(status.rawValue), "reason": .string(reason), "message": .string(message),
            "lastTransitionTime": .string(lastTransitionTime),
        ]
        if let observedGeneration { o["observedGeneration"] = .int(Int64(observedGeneration)) }
        return .object(o)
    }
}

// MARK: - Times and durations

/// Kubernetes timestamps without Foundation: `Time` is RFC 3339 in UTC to the second
/// ("2026-01-02T03:04:05Z"), `MicroTime` adds six fractional digits
/// ("2026-01-02T03:04:05.123456Z", used by Lease `acquireTime`/`renewTime`).
public enum KubeTime {
    /// The wall clock, in microseconds since 1970-01-01T00:00:00Z.
    public static func nowMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }

    /// The moments RFC 3339 can write (years 0000 to 9999), in seconds since 1970: formatting
    /// clamps to them, so every value of any Int64 formats to text `parse` reads back.
    public static let earliestSeconds: Int64 = -62_167_219_200  // 0000-01-01T00:00:00Z
    public static let latestSeconds: Int64 = 253_402_300_799  // 9999-12-31T23:59:59Z

    /// `Time` format for a moment given in seconds since 1970.
    public static func time(epochSeconds: Int64) -> String {
        let (date, secondOfDay) = split(min(max(epochSeconds, earliestSeconds), latestSeconds))
        return date + "T" + clock(secondOfDay) + "Z"
    }

    /// `MicroTime` format for a moment given in microseconds since 1970.
    public static func microTime(epochMicroseconds: Int64) -> String {
        // `%` and `/` cannot overflow here, unlike `seconds * 1_000_000` near Int64.min.
        var micros = epochMicroseconds % 1_000_000
        var seconds = epochMicroseconds / 1_000_000
        if micros < 0 {
            micros += 1_000_000
            seconds -= 1
        }
        if seconds < earliestSeconds { (seconds, micros) = (earliestSeconds, 0) }
        if seconds > latestSeconds { (seconds, micros) = (latestSeconds, 999_999) }
        let (date, secondOfDay) = split(seconds)
        return date + "T" + clock(secondOfDay) + "." + pad(Int(micros), 6) + "Z"
    }

    /// Reads RFC 3339 (any number of fractional digits, `Z` or an offset) into microseconds
    /// since 1970. Nil when malformed.
    public static func parse(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in i..<(i + n) {
                guard b[k] >= 48 && b[k] <= 57 else { return nil }
                v = v * 10 + Int(b[k] - 48)
            }
            i += n
            return v
        }
        func expect(_ c: UInt8...) -> Bool {
            guard i < b.count, c.contains(b[i]) else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), expect(45), let month = digits(2), expect(45), let day = digits(2),
            expect(UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")),
            let hour = digits(2), expect(58), let minute = digits(2), expect(58), let second = digits(2)
        else { return nil }
        guard (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60 else { return nil }
        var micros = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 100_000
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                micros += Int(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        var offset = 0
        if expect(UInt8(ascii: "Z"), UInt8(ascii: "z")) {
            offset = 0
        } else if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
            let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
            i += 1
            guard let oh = digits(2), expect(58), let om = digits(2), oh < 24, om < 60 else { return nil }
            offset = sign * (oh * 3600 + om * 60)
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = daysFromCivil(Int64(year), Int64(month), Int64(day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offset)
        return seconds * 1_000_000 + Int64(micros)
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }

    static func split(_ epochSeconds: Int64) -> (date: String, secondOfDay: Int) {
        let days = floorDiv(epochSeconds, 86_400)
        let secondOfDay = Int(epochSeconds - days * 86_400)
        let (y, m, d) = civilFromDays(days)
        return ("\(pad(Int(y), 4))-\(pad(Int(m), 2))-\(pad(Int(d), 2))", secondOfDay)
    }

    static func clock(_ secondOfDay: Int) -> String {
        "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
    }

    // Proleptic Gregorian calendar arithmetic on 400-year eras (146,097 days each),
    // with years starting in March so the leap day falls at the end.
    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
        let z = days + 719_468
        let era = floorDiv(z, 146_097)
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    static func daysFromCivil(_ year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDiv(y, 400)
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}

/// Go duration strings, as `metav1.Duration` serializes them: "5s", "1m30s", "500ms", "1.5h",
/// "1h2m3.5s", "-1s", "1.5us". Parsed as Go's `time.ParseDuration` does, with checked
/// arithmetic: a duration is an Int64 count of nanoseconds, so anything past
/// ±2562047h47m16.854775807s (about 292 years) is refused rather than wrapped or trapped on.
public enum KubeDuration {
    /// Why a text is not a Go duration.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// The longest Go duration, in nanoseconds (Int64.max).
    public static let maxNanoseconds = Int64.max

    /// Nanoseconds, as Go reads `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+` (or a bare "0"). Units:
    /// ns, us (µs, μs), ms, s, m, h. Fractions finer than a nanosecond are dropped.
    public static func nanoseconds(_ text: String) throws(ParseError) -> Int64 {
        let b = Array(text.utf8)
        var i = 0
        var negative = false
        if i < b.count, b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+") {
            negative = b[i] == UInt8(ascii: "-")
            i += 1
        }
        if b.count - i == 1 && b[i] == UInt8(ascii: "0") { return 0 }
        guard i < b.count else { throw ParseError(text.isEmpty ? "is empty" : "is not a duration such as \"5s\" or \"1m30s\"") }
        func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
        let limit = UInt64(1) << 63  // |Int64.min|; a positive total must stay below it
        var total: UInt64 = 0
        while i < b.count {
            guard b[i] == UInt8(ascii: ".") || isDigit(b[i]) else { throw ParseError("is not a duration such as \"5s\" or \"1m30s\"") }
            // The integer part; overflow is an error, as in Go.
            var whole: UInt64 = 0
            let wholeStart = i
            while i < b.count, isDigit(b[i]) {
                let (m, o1) = whole.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(UInt64(b[i] - UInt8(ascii: "0")))
                guard !o1, !o2, a <= limit else { throw ParseError("is out of range (at most 2562047h47m16.854775807s)") }
                whole = a
                i += 1
            }
            let hasWhole = i > wholeStart
            // The fraction: digits past what an Int64 holds are read and ignored.
            var fraction: UInt64 = 0
            var scale: Double = 1
            var hasFraction = false
            if i < b.count, b[i] == UInt8(ascii: ".") {
                i += 1
                let fractionStart = i
                var overflowed = false
                while i < b.count, isDigit(b[i]) {
                    if !overflowed {
                        let (m, o1) = fraction.multipliedReportingOverflow(by: 10)
                        let (a, o2) = m.addingReportingOverflow(UInt64(b[i] - UInt8(ascii: "0")))
                        if o1 || o2 || a > UInt64(Int64.max) {
                            overflowed = true
                        } else {
                            fraction = a
                            scale *= 10
                        }
                    }
                    i += 1
                }
                hasFraction = i > fractionStart
            }
            guard hasWhole || hasFraction else { throw ParseError("is not a duration such as \"5s\" or \"1m30s\"") }
            let unitStart = i
            while i < b.count, b[i] != UInt8(ascii: "."), !isDigit(b[i]) { i += 1 }
            guard i > unitStart else { throw ParseError("needs a unit (ns, us, ms, s, m or h), e.g. \"5s\"") }
            let unit: UInt64
            switch String(decoding: b[unitStart..<i], as: UTF8.self) {
            case "ns": unit = 1
            case "us", "\u{00B5}s", "\u{03BC}s": unit = 1_000
            case "ms": unit = 1_000_000
            case "s": unit = 1_000_000_000
            case "m": unit = 60_000_000_000
            case "h": unit = 3_600_000_000_000
            case let u: throw ParseError("has an unknown unit \"\(u.count > 16 ? String(u.prefix(16)) + "..." : u)\" (ns, us, ms, s, m or h)")
            }
            let (scaled, o) = whole.multipliedReportingOverflow(by: unit)
            guard !o, scaled <= limit else { throw ParseError("is out of range (at most 2562047h47m16.854775807s)") }
            var value = scaled
            if fraction > 0 {
                // At most an hour's worth of nanoseconds (3.6e12): exact enough in a Double.
                let extra = Double(fraction) * (Double(unit) / scale)
                let (sum, o2) = value.addingReportingOverflow(UInt64(min(extra, 3.6e12)))
                guard !o2, sum <= limit else { throw ParseError("is out of range (at most 2562047h47m16.854775807s)") }
                value = sum
            }
            let (sum, o3) = total.addingReportingOverflow(value)
            guard !o3, sum <= limit else { throw ParseError("is out of range (at most 2562047h47m16.854775807s)") }
            total = sum
        }
        if negative { return total == limit ? Int64.min : -Int64(total) }
        guard total < limit else { throw ParseError("is out of range (at most 2562047h47m16.854775807s)") }
        return Int64(total)
    }

    /// Seconds, or nil when the text is not a Go duration (or is out of its range).
    public static func seconds(_ text: String) -> Double? {
        guard let ns = try? nanoseconds(text) else { return nil }
        return Double(ns) / 1e9
    }

    /// Go's `Duration.String()`: "1h2m3.5s", "300ms", "1.5µs", "0s".
    public static func format(nanoseconds: Int64) -> String {
        if nanoseconds == 0 { return "0s" }
        let negative = nanoseconds < 0
        let u = nanoseconds.magnitude
        var out: String
        func fractional(_ v: UInt64, _ digits: Int) -> String {
            // v in units of 10^-digits: integer part, and the fraction without trailing zeros.
            var p: UInt64 = 1
            for _ in 0..<digits { p *= 10 }
            var frac = String(v % p)
            frac = String(repeating: "0", count: digits - frac.count) + frac
            while frac.hasSuffix("0") { frac.removeLast() }
            return frac.isEmpty ? String(v / p) : "\(v / p).\(frac)"
        }
        if u < 1_000 {
            out = "\(u)ns"
        } else if u < 1_000_000 {
            out = fractional(u, 3) + "\u{00B5}s"
        } else if u < 1_000_000_000 {
            out = fractional(u, 6) + "ms"
        } else {
            let seconds = fractional(u % 60_000_000_000, 9) + "s"
            let totalMinutes = u / 60_000_000_000
            if totalMinutes == 0 {
                out = seconds
            } else if totalMinutes < 60 {
                out = "\(totalMinutes)m" + seconds
            } else {
                out = "\(totalMinutes / 60)h\(totalMinutes % 60)m" + seconds
            }
        }
        return negative ? "-" + out : out
    }
}
