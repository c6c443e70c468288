#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SluiceCore

/// The default store: durable files in the data dir, no other service needed.
///
/// Layout: `store.snapshot` holds every entry at a revision (written to a temporary file,
/// fsynced, renamed into place, directory fsynced); `store.log` holds the writes since, one
/// record each: `[length u32][crc32 u32][JSON]`, appended and fsynced before the write is
/// acknowledged. Opening replays the log over the snapshot. A torn last record (a crash
/// mid-append, never acknowledged) is reported and cut off; damage before the last record
/// refuses to open, since acknowledged writes would be lost.
public actor EmbeddedStore: ConfigStore {
    public let directory: String
    /// Appends, fsyncs and compactions block: they run on a thread of their own, never on
    /// the cooperative pool or an event loop.
    private let executor = BlockingSerialExecutor(label: "sluice.embedded-store")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var entries: [ResourceKind: [String: StoreEntry]] = [:]
    private var revision: Int64 = 0
    private var logFD: Int32 = -1
    private var logBytes = 0
    private var logRecords = 0
    /// What opening found, for the log: torn tails that were cut off.
    public private(set) var recoveryNotes: [String] = []

    /// Compact when the log passes either bound.
    let compactBytes: Int
    let compactRecords: Int

    public init(directory: String, compactBytes: Int = 8 << 20, compactRecords: Int = 20_000) throws {
        self.directory = directory
        self.compactBytes = compactBytes
        self.compactRecords = compactRecords
        try Self.makeDirectory(directory)
        var entries: [ResourceKind: [String: StoreEntry]] = [:]
        var revision: Int64 = 0
        if let data = try Self.readFile("\(directory)/store.snapshot") {
            (entries, revision) = try Self.decodeSnapshot(data)
        }
        var notes: [String] = []
        let logPath = "\(directory)/store.log"
        var validLength = 0
        var records = 0
        if let log = try Self.readFile(logPath) {
            var offset = 0
            while offset < log.count {
                guard offset + 8 <= log.count else {
                    notes.append("store.log: torn record header at byte \(offset) (\(log.count - offset) bytes): cut off")
                    break
                }
                let length = Int(Self.readU32(log, offset))
                let crc = Self.readU32(log, offset + 4)
                guard offset + 8 + length <= log.count else {
                    notes.append("store.log: torn record at byte \(offset) (\(log.count - offset) of \(length + 8) bytes): cut off")
                    break
                }
                let payload = log[(offset + 8)..<(offset + 8 + length)]
                guard CRC32.checksum(payload) == crc else {
                    if offset + 8 + length == log.count {
                        notes.append("store.log: last record at byte \(offset) fails its checksum: cut off")
                        break
                    }
                    throw StoreError(.corrupt, "\(logPath): record at byte \(offset) fails its checksum and is followed by more records; refusing to open (restore from a backup or remove the damaged file)")
                }
                let record: JSONValue
                do {
                    record = try JSONValue.parse(payload)
                } catch {
                    throw StoreError(.corrupt, "\(logPath): record at byte \(offset) is not valid JSON: \(error)")
                }
                try Self.replay(record, into: &entries, revision: &revision)
                offset += 8 + length
                validLength = offset
                records += 1
            }
            if validLength < log.count {
                guard truncate(logPath, off_t(validLength)) == 0 else {
                    throw StoreError(.unavailable, "\(logPath): cannot cut off the torn tail: errno \(errno)")
                }
            }
        }
        self.entries = entries
        self.revision = revision
        self.recoveryNotes = notes
        self.logBytes = validLength
        self.logRecords = records
        logFD = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw StoreError(.unavailable, "\(logPath): cannot open: errno \(errno)") }
        _ = Self.fsyncDirectory(directory)
    }

    deinit {
        if logFD >= 0 { close(logFD) }
    }

    public var currentRevision: Int64 { revision }

    public func load() async throws -> (entries: [StoreEntry], revision: Int64) {
        var all: [StoreEntry] = []
        for kind in ResourceKind.allCases {
            if let m = entries[kind] { all += m.values.sorted { $0.createdIndex < $1.createdIndex } }
        }
        return (all, revision)
    }

    public func get(kind: ResourceKind, id: String) -> StoreEntry? { entries[kind]?[id] }

    public func put(kind: ResourceKind, id: String, value: JSONValue, expectedModifiedIndex: Int64?) async throws -> StoreEntry {
        let existing = entries[kind]?[id]
        if let expected = expectedModifiedIndex {
            if (existing?.modifiedIndex ?? 0) != expected {
                throw StoreError(.conflict, "\(kind.rawValue)/\(id) was modified concurrently (expected revision \(expected))")
            }
        }
        let rev = revision + 1
        let entry = StoreEntry(kind: kind, id: id, value: value, createdIndex: existing?.createdIndex ?? rev, modifiedIndex: rev)
        let record: JSONValue = [
            "op": "put", "kind": .string(kind.rawValue), "id": .string(id), "rev": .int(rev),
            "created": .int(entry.createdIndex), "value": value,
        ]
        try append(record)
        revision = rev
        entries[kind, default: [:]][id] = entry
        try compactIfNeeded()
        return entry
    }

    public func delete(kind: ResourceKind, id: String) async throws -> Int64? {
        guard entries[kind]?[id] != nil else { return nil }
        let rev = revision + 1
        try append(["op": "del", "kind": .string(kind.rawValue), "id": .string(id), "rev": .int(rev)])
        revision = rev
        entries[kind]?[id] = nil
        try compactIfNeeded()
        return rev
    }

    /// Ids for POST: increasing, 20 digits like APISIX's, never reused.
    public func nextID() async throws -> String {
        let n = revision + 1
        let digits = String(n)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    // MARK: Files

    private func append(_ record: JSONValue) throws {
        let payload = record.serializedBytes()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(payload.count + 8)
        Self.appendU32(&bytes, UInt32(payload.count))
        Self.appendU32(&bytes, CRC32.checksum(payload))
        bytes += payload
        try Self.writeAll(logFD, bytes, what: "store.log")
        guard fsync(logFD) == 0 else { throw StoreError(.unavailable, "store.log: fsync failed: errno \(errno)") }
        logBytes += bytes.count
        logRecords += 1
    }

    private func compactIfNeeded() throws {
        guard logBytes >= compactBytes || logRecords >= compactRecords else { return }
        try compact()
    }

    /// Writes a snapshot of everything, then empties the log. A crash between the two
    /// leaves log records the snapshot already holds; replay skips them by revision.
    public func compact() throws {
        var list: [JSONValue] = []
        for kind in ResourceKind.allCases {
            for e in (entries[kind] ?? [:]).values.sorted(by: { $0.createdIndex < $1.createdIndex }) {
                list.append([
                    "kind": .string(kind.rawValue), "id": .string(e.id), "created": .int(e.createdIndex),
                    "modified": .int(e.modifiedIndex), "value": e.value,
                ])
            }
        }
        let doc: JSONValue = ["revision": .int(revision), "entries": .array(list)]
        let tmp = "\(directory)/store.snapshot.tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError(.unavailable, "\(tmp): cannot open: errno \(errno)") }
        do {
            try Self.writeAll(fd, doc.serializedBytes(), what: tmp)
            guard fsync(fd) == 0 else { throw StoreError(.unavailable, "\(tmp): fsync failed: errno \(errno)") }
        } catch {
            close(fd)
            throw error
        }
        close(fd)
        guard rename(tmp, "\(directory)/store.snapshot") == 0 else {
            throw StoreError(.unavailable, "cannot rename \(tmp): errno \(errno)")
        }
        _ = Self.fsyncDirectory(directory)
        guard ftruncate(logFD, 0) == 0, fsync(logFD) == 0 else {
            throw StoreError(.unavailable, "store.log: cannot truncate after compaction: errno \(errno)")
        }
        logBytes = 0
        logRecords = 0
    }

    static func replay(_ record: JSONValue, into entries: inout [ResourceKind: [String: StoreEntry]], revision: inout Int64) throws {
        guard let op = record["op"]?.stringValue, let kindName = record["kind"]?.stringValue,
            let kind = ResourceKind(rawValue: kindName), let id = record["id"]?.stringValue, let rev = record["rev"]?.intValue
        else {
            throw StoreError(.corrupt, "store.log: a record lacks op, kind, id or rev")
        }
        if rev <= revision { return }  // already in the snapshot
        switch op {
        case "put":
            guard let value = record["value"] else { throw StoreError(.corrupt, "store.log: put record without value") }
            let created = record["created"]?.intValue ?? rev
            entries[kind, default: [:]][id] = StoreEntry(kind: kind, id: id, value: value, createdIndex: created, modifiedIndex: rev)
        case "del":
            entries[kind]?[id] = nil
        default:
            throw StoreError(.corrupt, "store.log: unknown op \(op)")
        }
        revision = rev
    }

    static func decodeSnapshot(_ data: [UInt8]) throws -> ([ResourceKind: [String: StoreEntry]], Int64) {
        let doc: JSONValue
        do {
            doc = try JSONValue.parse(data)
        } catch {
            throw StoreError(.corrupt, "store.snapshot: not valid JSON (\(error)); refusing to open")
        }
        guard let revision = doc["revision"]?.intValue, let list = doc["entries"]?.arrayValue else {
            throw StoreError(.corrupt, "store.snapshot: missing revision or entries; refusing to open")
        }
        var entries: [ResourceKind: [String: StoreEntry]] = [:]
        for item in list {
            guard let kind = item["kind"]?.stringValue.flatMap(ResourceKind.init(rawValue:)), let id = item["id"]?.stringValue,
                let created = item["created"]?.intValue, let modified = item["modified"]?.intValue, let value = item["value"]
            else {
                throw StoreError(.corrupt, "store.snapshot: malformed entry; refusing to open")
            }
            entries[kind, default: [:]][id] = StoreEntry(kind: kind, id: id, value: value, createdIndex: created, modifiedIndex: modified)
        }
        return (entries, revision)
    }

    static func readU32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        UInt32(bytes[offset]) << 24 | UInt32(bytes[offset + 1]) << 16 | UInt32(bytes[offset + 2]) << 8 | UInt32(bytes[offset + 3])
    }

    static func appendU32(_ bytes: inout [UInt8], _ v: UInt32) {
        bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], what: String) throws {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                write(fd, raw.baseAddress! + written, bytes.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(.unavailable, "\(what): write failed: errno \(errno)")
            }
            written += n
        }
    }

    static func readFile(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw StoreError(.unavailable, "\(path): cannot open: errno \(errno)")
        }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StoreError(.unavailable, "\(path): read failed: errno \(errno)")
            }
            if n == 0 { break }
            result += chunk[0..<n]
        }
        return result
    }

    /// Creates the data directory (mode 0700) when it is missing.
    public static func makeDataDirectory(_ path: String) throws { try makeDirectory(path) }

    static func makeDirectory(_ path: String) throws {
        var isDir = stat()
        if stat(path, &isDir) == 0 { return }
        // mkdir -p
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/\(part)"
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw StoreError(.unavailable, "\(path): cannot create the data directory: errno \(errno)")
            }
        }
    }

    static func fsyncDirectory(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return fsync(fd) == 0
    }
}
