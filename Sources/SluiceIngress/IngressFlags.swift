import SluiceCore

/// A `sluice ingress` flag out of its range; the message names the flag.
public struct IngressFlagError: Error, Sendable, CustomStringConvertible {
    public var flag: String
    public var message: String
    public init(flag: String, _ message: String) {
        self.flag = flag
        self.message = message
    }
    public var description: String { "\(flag): \(message)" }
}

/// Checked conversions of the controller's timing flags into `Duration`s: a flag such as
/// `--retry-period 1e300` or `inf` is refused naming the flag, never converted with a
/// trapping `Int64(seconds * 1000)`.
public enum IngressFlags {
    /// The longest timing flag there is: a day.
    public static let maxSeconds = 86_400.0

    /// `seconds` as a Duration, when finite, at least `min` and at most a day.
    public static func duration(seconds: Double, flag: String, min: Double) throws(IngressFlagError) -> Duration {
        guard seconds.isFinite, seconds >= min, seconds <= maxSeconds else {
            throw IngressFlagError(flag: flag, "must be between \(FieldReader.format(min)) and \(FieldReader.format(maxSeconds)) seconds, got \(FieldReader.format(seconds))")
        }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    /// `--coalesce-window` (milliseconds): 0 to a minute.
    public static func coalesceWindow(milliseconds: Int) throws(IngressFlagError) -> Duration {
        guard (0...60_000).contains(milliseconds) else {
            throw IngressFlagError(flag: "--coalesce-window", "must be between 0 and 60000 milliseconds, got \(milliseconds)")
        }
        return .milliseconds(milliseconds)
    }

    /// `--resync-interval` (seconds): 0.1 s to a day.
    public static func resyncInterval(seconds: Double) throws(IngressFlagError) -> Duration {
        try duration(seconds: seconds, flag: "--resync-interval", min: 0.1)
    }
}
