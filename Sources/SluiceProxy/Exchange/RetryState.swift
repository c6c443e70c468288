import NIOCore

/// Which nodes an exchange tried and whether it may try another, kept apart from routing and
/// from the attempt itself (Envoy's retry state): `retries` further attempts within
/// `retry_timeout` seconds of the request's start, each on a node not tried yet, plus one free
/// retry when a pooled keep-alive connection turns out to be closed.
struct RetryState {
    /// Retries after the first attempt.
    let retries: Int
    /// Seconds from the request's start after which no new attempt starts; 0 means no limit.
    let retryTimeout: Double
    private(set) var tried: [Int] = []
    private(set) var attempts = 0
    private(set) var staleRetryUsed = false

    init(retries: Int, retryTimeout: Double) {
        self.retries = max(0, retries)
        self.retryTimeout = retryTimeout
    }

    mutating func noteAttempt() { attempts &+= 1 }

    /// The node failed (refused, timed out, closed before answering): it is not picked again
    /// by this request.
    mutating func noteFailed(_ node: Int) {
        if !tried.contains(node) { tried.append(node) }
    }

    /// Whether another node may be tried now.
    func mayRetry(startedAt: NIODeadline, now: NIODeadline) -> Bool {
        guard attempts <= retries else { return false }
        if retryTimeout > 0 && now - startedAt >= TimeAmount(seconds: retryTimeout) { return false }
        return true
    }

    /// A pooled connection closed under the first byte of a request: retried once on a new
    /// connection to the same node, not counted as an attempt.
    mutating func takeStaleRetry() -> Bool {
        guard !staleRetryUsed else { return false }
        staleRetryUsed = true
        return true
    }
}
