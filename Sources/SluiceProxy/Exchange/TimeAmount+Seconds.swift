import NIOCore

extension TimeAmount {
    /// Seconds from a validated config value, saturated at a year so that it cannot trap.
    init(seconds: Double) {
        self = .nanoseconds(Int64(min(max(seconds, 0), 86_400 * 365) * 1_000_000_000))
    }
}
