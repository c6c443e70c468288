import KubeClient
import SluiceCore

/// The ranges numbers from Kubernetes objects must fall in before they become part of a
/// gateway object, and the checked conversions that read them. Every number of every CRD,
/// Ingress and Service field the translator copies goes through here: a value out of its
/// range is a `TranslationError` naming the field, never a trap and never an object the
/// gateway would refuse (or, worse, take and trap on later).
///
/// The ranges follow APISIX's own schemas where it has one (health-check counters 1-254,
/// HTTP statuses 200-599, ports 1-65535) and otherwise the gateway's (priorities and weights
/// are 32-bit); durations are Go durations, bounded per field.
enum FieldBounds {
    static let int32 = Int(Int32.min)...Int(Int32.max)
    static let nonNegativeInt32 = 0...Int(Int32.max)
    static let positiveInt32 = 1...Int(Int32.max)
    static let port = 1...65535
    /// APISIX's health-check counters (`successes`, `http_failures`, `tcp_failures`, `timeouts`).
    static let healthCounter = 1...254
    static let httpStatus = 200...599

    /// `timeout.connect`/`send`/`read`: more than 0, at most a day.
    static let maxTimeout: Int64 = 86_400 * 1_000_000_000
    /// Health-check `interval`: 1 s to a day.
    static let minInterval: Int64 = 1_000_000_000
    static let maxInterval: Int64 = 86_400 * 1_000_000_000

    /// `value` when it is in `range`; an error naming `path` otherwise.
    static func int(_ value: Int, _ range: ClosedRange<Int>, _ path: String) throws(TranslationError) -> Int64 {
        guard range.contains(value) else { throw TranslationError("\(path): must be between \(range.lowerBound) and \(range.upperBound), got \(value)") }
        return Int64(value)
    }

    /// A Go duration (`"5s"`, `"1m30s"`, `"1.5h"`) in nanoseconds, within `min...max`
    /// (`minExclusive`: more than `min`).
    static func duration(_ text: String, _ path: String, min: Int64, minExclusive: Bool = false, max: Int64) throws(TranslationError) -> Int64 {
        let ns: Int64
        do {
            ns = try KubeDuration.nanoseconds(text)
        } catch {
            throw TranslationError("\(path): \(error.reason), got \"\(shown(text))\"")
        }
        if minExclusive ? ns <= min : ns < min {
            let bound = KubeDuration.format(nanoseconds: min)
            throw TranslationError("\(path): must be \(minExclusive ? "more than" : "at least") \(bound), got \"\(shown(text))\"")
        }
        guard ns <= max else { throw TranslationError("\(path): must be at most \(KubeDuration.format(nanoseconds: max)), got \"\(shown(text))\"") }
        return ns
    }

    /// Seconds as the gateway takes them: an integer when whole, else a number.
    static func seconds(nanoseconds ns: Int64) -> JSONValue {
        ns % 1_000_000_000 == 0 ? .int(ns / 1_000_000_000) : .double(Double(ns) / 1e9)
    }

    /// A finite number of seconds in `(0, max]`.
    static func positiveSeconds(_ value: Double, _ path: String, max: Double) throws(TranslationError) -> Double {
        guard value.isFinite, value > 0, value <= max else {
            throw TranslationError("\(path): must be a number of seconds more than 0 and at most \(FieldReader.format(max)), got \(FieldReader.format(value))")
        }
        return value
    }

    /// A host name or address for a node or a Host header: the characters of a DNS name or
    /// an IP literal, no wildcard, no spaces or control characters, at most 253 bytes.
    static func host(_ host: String, _ path: String) throws(TranslationError) {
        guard !host.isEmpty, host.utf8.count <= 253, !host.hasPrefix("*") else {
            throw TranslationError("\(path): must be a host name or IP address, got \"\(shown(host))\"")
        }
        do { try HostPattern.validate(host, path: path) } catch { throw TranslationError(error.description) }
    }

    /// Whether text has a control character (CR, LF, NUL, DEL, ...): such text must not reach
    /// a header or a request line.
    static func hasControl(_ text: String) -> Bool { text.utf8.contains { $0 < 0x20 || $0 == 0x7F } }
    static func hasControlOrSpace(_ text: String) -> Bool { text.utf8.contains { $0 <= 0x20 || $0 == 0x7F } }

    /// Text as it is quoted in an error: cut to 64 characters, control characters escaped,
    /// so a hostile 64 KiB value or CR LF does not end up whole in a status condition.
    static func shown(_ text: String) -> String {
        var out = ""
        var n = 0
        for s in text.unicodeScalars {
            if n == 64 {
                out += "..."
                break
            }
            n += 1
            if s.value < 0x20 || s.value == 0x7F { out += "\\u{\(String(s.value, radix: 16))}" } else { out.unicodeScalars.append(s) }
        }
        return out
    }
}
