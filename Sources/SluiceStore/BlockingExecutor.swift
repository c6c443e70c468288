import Dispatch

/// A serial executor on a thread of its own (a serial dispatch queue), for actors whose work
/// blocks: file writes, `fsync`, snapshot compaction. Run on Swift's cooperative pool, which
/// has one thread per core (two here), a 5 ms `fsync` would hold a thread every task of the
/// process needs; on this executor it holds only its own.
public final class BlockingSerialExecutor: SerialExecutor, @unchecked Sendable {
    // The queue is serial and does the synchronisation; the class holds nothing mutable.
    private let queue: DispatchQueue

    public init(label: String) {
        queue = DispatchQueue(label: label, qos: .utility)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedSerialExecutor()
        queue.async { job.runSynchronously(on: executor) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    /// Runs `body` on the queue and returns its result, without blocking the caller's thread.
    public func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body()) }
        }
    }
}
