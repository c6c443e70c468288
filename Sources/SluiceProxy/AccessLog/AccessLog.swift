import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The access log: one line per request, written by one dedicated thread so that no event
/// loop ever waits on the disk.
///
/// Each event loop formats its lines into its own `AccessLogBuffer` and hands a whole chunk
/// (about 32 KiB, or whatever is there after 100 ms) to this object; handing off takes one
/// lock per chunk, none per line. The writer thread writes chunks in the order they were
/// handed off with `write(2)`. Chunks waiting to be written are bounded
/// (`maxPendingBytes`): a chunk that would go above the bound is dropped and counted
/// (`droppedLines`, `droppedBytes`) instead of making a request wait.
///
/// `reopen()` (SIGUSR1) makes the writer open the path again before the next chunk, so that
/// `mv access.log access.log.1; kill -USR1 PID` moves new lines into a new `access.log`.
public final class AccessLog: Sendable {
    /// Where lines go.
    public enum Destination: Sendable, Equatable, CustomStringConvertible {
        /// The process's standard output (file descriptor 1, never closed or reopened).
        case stdout
        /// A file, created with mode 0644 when missing and always appended to.
        case file(String)

        public var description: String {
            switch self {
            case .stdout: return "stdout"
            case .file(let path): return path
            }
        }
    }

    public typealias Format = AccessLogFormat

    /// The file could not be opened (at start; a failed reopen keeps the old file instead).
    public struct OpenError: Error, CustomStringConvertible, Sendable {
        public var path: String
        public var errno: Int32
        public var description: String { "cannot open access log \(path): \(AccessLog.errorText(errno))" }
    }

    /// Pending bytes above which chunks are dropped, unless set at init.
    public static let defaultMaxPendingBytes = 8 << 20

    public let destination: Destination
    public let format: Format
    /// The zone of `$time_local`.
    public let timeZone: AccessLogTimeZone
    /// Bytes handed off but not yet written above which a new chunk is dropped.
    public let maxPendingBytes: Int

    private let handOff: HandOff
    private let counters: Counters

    /// Opens `destination` (creating a file with mode 0644, `O_APPEND`) and starts the
    /// writer thread. Throws `OpenError` naming the path when the file cannot be opened.
    public init(
        destination: Destination, format: Format = .text, timeZone: AccessLogTimeZone = .local,
        maxPendingBytes: Int = AccessLog.defaultMaxPendingBytes
    ) throws {
        self.destination = destination
        self.format = format
        self.timeZone = timeZone
        self.maxPendingBytes = max(1, maxPendingBytes)
        let fd: Int32
        switch destination {
        case .stdout: fd = 1
        case .file(let path): fd = try Self.open(path)
        }
        handOff = HandOff()
        counters = Counters()
        let writer = Writer(fd: fd, destination: destination, handOff: handOff, counters: counters)
        do {
            try writer.start()
        } catch {
            if case .file = destination { _ = systemClose(fd) }
            throw error
        }
    }

    deinit {
        // The writer drains what it has and exits; nobody waits for it.
        handOff.requestClose()
    }

    /// Lines dropped because the writer was too far behind (or a write failed).
    public var droppedLines: Int { counters.droppedLines.load(ordering: .relaxed) }
    /// Bytes of the dropped lines.
    public var droppedBytes: Int { counters.droppedBytes.load(ordering: .relaxed) }
    /// Lines written to the destination.
    public var linesWritten: Int { counters.linesWritten.load(ordering: .relaxed) }
    /// Failed `write(2)` calls (the chunk is dropped) and failed reopens.
    public var writeErrors: Int { counters.writeErrors.load(ordering: .relaxed) }

    /// Makes the writer open the path again before it writes the next chunk (chunks handed
    /// off after this call go to the new file). Safe from any thread; no-op for stdout.
    public func reopen() {
        handOff.requestReopen()
    }

    /// Waits until every chunk handed off before this call is written (or dropped by a
    /// failed write). Returns false when `timeout` passed first. Blocks: tests and shutdown.
    @discardableResult
    public func flush(timeout: Duration? = nil) -> Bool {
        handOff.waitWritten(deadline: timeout.map(Self.deadline))
    }

    /// Writes what was handed off, closes the file and stops the writer thread; lines
    /// handed off later are dropped. Waits at most `timeout` for the writer (a destination
    /// that blocks forever, such as a FIFO nobody reads, cannot hold shutdown). Returns false
    /// when it gave up waiting.
    @discardableResult
    public func close(timeout: Duration = .seconds(5)) -> Bool {
        handOff.requestClose()
        return handOff.waitExited(deadline: Self.deadline(timeout))
    }

    /// Hands one chunk of whole lines to the writer, or drops it when the pending bound
    /// would be passed or the log is closed. One lock per call.
    func submit(_ chunk: ByteBuffer, lines: Int) {
        let size = chunk.readableBytes
        guard size > 0 else { return }
        if !handOff.submit(Chunk(buffer: chunk, lines: lines), maxPending: maxPendingBytes) {
            counters.droppedLines.add(lines, ordering: .relaxed)
            counters.droppedBytes.add(size, ordering: .relaxed)
        }
    }

    // MARK: - System calls

    static func open(_ path: String) throws(OpenError) -> Int32 {
        let flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC
        while true {
            let fd = systemOpen(path, flags, 0o644)
            if fd >= 0 { return fd }
            let e = errno
            if e == EINTR { continue }
            throw OpenError(path: path, errno: e)
        }
    }

    static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }

    /// An absolute `CLOCK_REALTIME` time `timeout` from now (for `pthread_cond_timedwait`).
    static func deadline(_ timeout: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let (seconds, attoseconds) = timeout.components
        let addSeconds = max(0, min(seconds, 1_000_000_000))
        let addNanos = seconds < 0 ? 0 : max(0, attoseconds / 1_000_000_000)
        var sec = Int64(now.tv_sec) + addSeconds
        var nsec = Int64(now.tv_nsec) + addNanos
        if nsec >= 1_000_000_000 {
            sec += 1
            nsec -= 1_000_000_000
        }
        var result = timespec()
        result.tv_sec = time_t(truncatingIfNeeded: sec)
        result.tv_nsec = Int(truncatingIfNeeded: nsec)
        return result
    }
}

/// A run of whole formatted lines.
struct Chunk: Sendable {
    var buffer: ByteBuffer
    var lines: Int
}

/// The log's counters, shared by producers and the writer thread.
final class Counters: Sendable {
    let droppedLines = Atomic<Int>(0)
    let droppedBytes = Atomic<Int>(0)
    let linesWritten = Atomic<Int>(0)
    let writeErrors = Atomic<Int>(0)
}

/// The queue between the event loops and the writer thread: a pthread mutex, a condition the
/// writer waits on for work, and a condition `flush`/`close` wait on for progress.
///
/// `@unchecked Sendable`: `state` is read and written only while `mutex` is held, and the
/// pthread objects are allocated once in `init` and freed in `deinit`, when no thread can
/// use them any more.
final class HandOff: @unchecked Sendable {
    struct State {
        var chunks: [Chunk] = []
        /// Bytes accepted and not yet written (queued or in the writer's batch).
        var pendingBytes = 0
        /// Chunks accepted, and chunks the writer finished (written or failed).
        var accepted = 0
        var finished = 0
        var reopenRequested = false
        var closing = false
        var exited = false
    }

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let work: UnsafeMutablePointer<pthread_cond_t>
    private let progress: UnsafeMutablePointer<pthread_cond_t>
    private var state = State()

    init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        work = .allocate(capacity: 1)
        work.initialize(to: pthread_cond_t())
        pthread_cond_init(work, nil)
        progress = .allocate(capacity: 1)
        progress.initialize(to: pthread_cond_t())
        pthread_cond_init(progress, nil)
    }

    deinit {
        pthread_cond_destroy(progress)
        progress.deallocate()
        pthread_cond_destroy(work)
        work.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func locked<R>(_ body: (inout State) -> R) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&state)
    }

    /// Queues `chunk` unless the log is closing or the pending bytes would pass `maxPending`
    /// (a chunk is always taken when nothing is pending). Returns whether it was queued.
    func submit(_ chunk: Chunk, maxPending: Int) -> Bool {
        let size = chunk.buffer.readableBytes
        let queued = locked { s -> Bool in
            guard !s.closing, s.pendingBytes == 0 || size <= maxPending - s.pendingBytes else { return false }
            s.chunks.append(chunk)
            s.pendingBytes += size
            s.accepted += 1
            return true
        }
        if queued { pthread_cond_signal(work) }
        return queued
    }

    func requestReopen() {
        locked { $0.reopenRequested = true }
        pthread_cond_signal(work)
    }

    func requestClose() {
        locked { $0.closing = true }
        pthread_cond_signal(work)
    }

    /// The writer: waits until there is work, then moves every queued chunk into `batch`
    /// (kept empty by the caller, reused for its capacity).
    func take(into batch: inout [Chunk]) -> (reopen: Bool, closing: Bool) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while state.chunks.isEmpty && !state.reopenRequested && !state.closing {
            pthread_cond_wait(work, mutex)
        }
        swap(&batch, &state.chunks)
        let reopen = state.reopenRequested
        state.reopenRequested = false
        return (reopen, state.closing)
    }

    /// The writer: `count` chunks of `bytes` in total are done.
    func finished(count: Int, bytes: Int) {
        locked { s in
            s.finished += count
            s.pendingBytes -= bytes
        }
        pthread_cond_broadcast(progress)
    }

    func markExited() {
        locked { $0.exited = true }
        pthread_cond_broadcast(progress)
    }

    /// Waits until every chunk accepted so far is finished, or the deadline.
    func waitWritten(deadline: timespec?) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        let target = state.accepted
        return wait(deadline) { $0.finished >= target || $0.exited }
    }

    /// Waits until the writer thread has exited, or the deadline.
    func waitExited(deadline: timespec?) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return wait(deadline) { $0.exited }
    }

    /// With `mutex` held: waits on `progress` until `done` or the deadline.
    private func wait(_ deadline: timespec?, until done: (State) -> Bool) -> Bool {
        while !done(state) {
            if var until = deadline {
                if pthread_cond_timedwait(progress, mutex, &until) == ETIMEDOUT { return done(state) }
            } else {
                pthread_cond_wait(progress, mutex)
            }
        }
        return true
    }
}

/// The writer thread's own state: the file descriptor is touched by nobody else once the
/// thread runs.
///
/// `@unchecked Sendable`: it is handed to the new thread once, and from then on only that
/// thread reads or writes `fd` and `reportedError`.
private final class Writer: @unchecked Sendable {
    private var fd: Int32
    private let destination: AccessLog.Destination
    private let handOff: HandOff
    private let counters: Counters
    /// A write error was already reported on stderr; cleared by the next good write.
    private var reportedError = false

    init(fd: Int32, destination: AccessLog.Destination, handOff: HandOff, counters: Counters) {
        self.fd = fd
        self.destination = destination
        self.handOff = handOff
        self.counters = counters
    }

    struct StartError: Error, CustomStringConvertible {
        var code: Int32
        var description: String { "cannot start the access log writer thread: \(AccessLog.errorText(code))" }
    }

    /// Starts the detached writer thread, which owns a reference to `self` until it exits.
    func start() throws {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
        var thread: pthread_t? = nil
        #else
        var thread = pthread_t()
        #endif
        let rc = pthread_create(&thread, &attributes, { raw in
            let context: UnsafeMutableRawPointer? = raw
            guard let context else { return nil }
            Unmanaged<Writer>.fromOpaque(context).takeRetainedValue().run()
            return nil
        }, context)
        if rc != 0 {
            Unmanaged<Writer>.fromOpaque(context).release()
            throw StartError(code: rc)
        }
    }

    private func run() {
        // A reader that went away (FIFO, pipe on stdout) is a write error here, not a
        // process-killing SIGPIPE.
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
        #if canImport(Darwin)
        _ = fcntl(fd, F_SETNOSIGPIPE, 1)
        #endif

        var batch: [Chunk] = []
        while true {
            let (reopen, closing) = handOff.take(into: &batch)
            if reopen { reopenFile() }
            var bytes = 0
            for chunk in batch {
                bytes += chunk.buffer.readableBytes
                if writeAll(chunk.buffer) {
                    counters.linesWritten.add(chunk.lines, ordering: .relaxed)
                } else {
                    counters.droppedLines.add(chunk.lines, ordering: .relaxed)
                    counters.droppedBytes.add(chunk.buffer.readableBytes, ordering: .relaxed)
                }
            }
            let count = batch.count
            batch.removeAll(keepingCapacity: true)
            if count > 0 { handOff.finished(count: count, bytes: bytes) }
            // `closing` was read with the queue emptied, and nothing is queued after it.
            if closing { break }
        }
        if case .file = destination { _ = systemClose(fd) }
        handOff.markExited()
    }

    /// Opens the path again; on failure keeps writing to the file it has.
    private func reopenFile() {
        guard case .file(let path) = destination else { return }
        do {
            let newFD = try AccessLog.open(path)
            #if canImport(Darwin)
            _ = fcntl(newFD, F_SETNOSIGPIPE, 1)
            #endif
            _ = systemClose(fd)
            fd = newFD
        } catch {
            counters.writeErrors.add(1, ordering: .relaxed)
            report("sluice: access log: \(error); still writing to the file opened before\n")
        }
    }

    /// Writes all of `buffer`, through short writes, EINTR and EAGAIN (a non-blocking
    /// stdout). False on any other error.
    private func writeAll(_ buffer: ByteBuffer) -> Bool {
        let ok = buffer.withUnsafeReadableBytes { bytes -> Bool in
            guard let base = bytes.baseAddress else { return true }
            var offset = 0
            while offset < bytes.count {
                let n = systemWrite(fd, base + offset, bytes.count - offset)
                if n > 0 {
                    offset += n
                    continue
                }
                let e = n < 0 ? errno : EIO
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK {
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 1000)
                    continue
                }
                counters.writeErrors.add(1, ordering: .relaxed)
                #if os(Linux)
                if e == EPIPE { consumePipeSignal() }
                #endif
                if !reportedError {
                    reportedError = true
                    report("sluice: access log \(destination): write failed: \(AccessLog.errorText(e)); lines are dropped until a write succeeds\n")
                }
                return false
            }
            return true
        }
        if ok { reportedError = false }
        return ok
    }

    #if os(Linux)
    /// Takes the SIGPIPE an EPIPE left pending on this thread (blocked here, never delivered).
    private func consumePipeSignal() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGPIPE)
        var zero = timespec()
        _ = sigtimedwait(&set, nil, &zero)
    }
    #endif

    private func report(_ message: String) {
        var message = message
        message.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return }
            _ = systemWrite(2, base, bytes.count)
        }
    }
}

/// One event loop's access log lines on their way to the writer thread.
///
/// Confined to its event loop (not `Sendable`): `append` formats the record straight into a
/// loop-local `ByteBuffer`, with no lock and no allocation beyond buffer growth for an
/// unusually long line. The buffer goes to the `AccessLog` as one chunk when it reaches
/// `chunkBytes`, or at the latest `flushInterval` after its first line: one timer is armed
/// when a line goes into an empty buffer and none is armed; it hands off whatever is there
/// when it fires.
///
/// Lines still buffered when the event loop stops are lost unless `flush()` ran on the
/// loop first (shutdown does that); lines of a buffer that is deinitialized are handed off.
public final class AccessLogBuffer {
    public let eventLoop: EventLoop
    public let log: AccessLog
    /// A chunk is handed off when it reaches this many bytes.
    public let chunkBytes: Int
    /// ... or this long after its first line.
    public let flushInterval: TimeAmount

    private var formatter: AccessLogFormatter
    private var buffer: ByteBuffer
    private var lines = 0
    private var timerArmed = false

    /// A buffer for lines written on `eventLoop`; create and use it on that loop only.
    public init(
        log: AccessLog, eventLoop: EventLoop, chunkBytes: Int = 32 * 1024,
        flushInterval: TimeAmount = .milliseconds(100)
    ) {
        self.eventLoop = eventLoop
        self.log = log
        self.chunkBytes = max(1, chunkBytes)
        self.flushInterval = flushInterval
        formatter = AccessLogFormatter(format: log.format, timeZone: log.timeZone)
        buffer = Self.makeBuffer(self.chunkBytes)
    }

    deinit {
        if lines > 0 { log.submit(buffer, lines: lines) }
    }

    /// Lines formatted and not yet handed off.
    public var bufferedLines: Int { lines }

    /// Formats `record` as one line into the loop's buffer; hands the buffer off when full.
    public func append(_ record: AccessLogRecord) {
        eventLoop.assertInEventLoop()
        formatter.append(record, to: &buffer)
        lines += 1
        if buffer.readableBytes >= chunkBytes {
            handOff()
        } else if !timerArmed {
            timerArmed = true
            eventLoop.assumeIsolated().scheduleTask(in: flushInterval) { [self] in
                timerArmed = false
                if lines > 0 { handOff() }
            }
        }
    }

    /// Hands off the buffered lines now (shutdown, tests). Call on the loop.
    public func flush() {
        eventLoop.assertInEventLoop()
        if lines > 0 { handOff() }
    }

    private func handOff() {
        let chunk = buffer
        let count = lines
        buffer = Self.makeBuffer(chunkBytes)
        lines = 0
        log.submit(chunk, lines: count)
    }

    /// Room for a full chunk plus a typical line, so that the last line rarely regrows it.
    private static func makeBuffer(_ chunkBytes: Int) -> ByteBuffer {
        ByteBufferAllocator().buffer(capacity: chunkBytes + min(chunkBytes, 4096))
    }
}

// The C library's calls under names that do not clash with the methods above.
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func systemClose(_ fd: Int32) -> Int32 { close(fd) }
private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int { write(fd, bytes, count) }
