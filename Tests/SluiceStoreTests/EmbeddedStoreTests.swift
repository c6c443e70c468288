import SluiceCore
import SluiceStore
import Testing

#if canImport(Glibc)
import Glibc
#endif

func temporaryDirectory() -> String {
    var template = Array("/tmp/sluice-store-XXXXXX".utf8CString)
    let path = template.withUnsafeMutableBufferPointer { buf -> String in
        guard let p = mkdtemp(buf.baseAddress!) else { return "/tmp/sluice-store-fallback-\(getpid())" }
        return String(cString: p)
    }
    return path
}

func fileSize(_ path: String) -> Int {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : -1
}

func appendBytes(_ path: String, _ bytes: [UInt8]) {
    let fd = open(path, O_WRONLY | O_APPEND)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
    close(fd)
}

@Suite struct EmbeddedStoreTests {
    @Test func writesSurviveReopenWithIncreasingRevisions() async throws {
        let dir = temporaryDirectory()
        do {
            let store = try EmbeddedStore(directory: dir)
            let a = try await store.put(kind: .routes, id: "1", value: ["uri": "/a"], expectedModifiedIndex: nil)
            let b = try await store.put(kind: .upstreams, id: "u", value: ["nodes": [:]], expectedModifiedIndex: nil)
            let a2 = try await store.put(kind: .routes, id: "1", value: ["uri": "/a2"], expectedModifiedIndex: a.modifiedIndex)
            #expect(a.modifiedIndex < b.modifiedIndex && b.modifiedIndex < a2.modifiedIndex)
            #expect(a2.createdIndex == a.createdIndex)
            #expect(try await store.delete(kind: .upstreams, id: "u") != nil)
            #expect(try await store.delete(kind: .upstreams, id: "u") == nil)
        }
        let reopened = try EmbeddedStore(directory: dir)
        let (entries, revision) = try await reopened.load()
        #expect(entries.count == 1)
        #expect(entries.first?.value == ["uri": "/a2"])
        #expect(revision == 4)
        let next = try await reopened.put(kind: .routes, id: "2", value: ["uri": "/b"], expectedModifiedIndex: nil)
        #expect(next.modifiedIndex == 5)
    }

    @Test func compareAndSwapRefusesStaleWrites() async throws {
        let store = try EmbeddedStore(directory: temporaryDirectory())
        let a = try await store.put(kind: .routes, id: "1", value: ["v": 1], expectedModifiedIndex: 0)
        await #expect(throws: StoreError.self) {
            _ = try await store.put(kind: .routes, id: "1", value: ["v": 2], expectedModifiedIndex: 0)
        }
        _ = try await store.put(kind: .routes, id: "1", value: ["v": 2], expectedModifiedIndex: a.modifiedIndex)
        await #expect(throws: StoreError.self) {
            _ = try await store.put(kind: .routes, id: "1", value: ["v": 3], expectedModifiedIndex: a.modifiedIndex)
        }
    }

    @Test func compactionKeepsEverythingAndShrinksTheLog() async throws {
        let dir = temporaryDirectory()
        do {
            let store = try EmbeddedStore(directory: dir, compactBytes: 1 << 30, compactRecords: 50)
            for i in 0..<120 {
                _ = try await store.put(kind: .routes, id: "r\(i % 30)", value: ["uri": .string("/\(i)")], expectedModifiedIndex: nil)
            }
        }
        #expect(fileSize("\(dir)/store.log") < 30 * 100)
        let (entries, revision) = try await EmbeddedStore(directory: dir).load()
        #expect(entries.count == 30)
        #expect(revision == 120)
        #expect(entries.first { $0.id == "r29" }?.value == ["uri": "/119"])
    }

    @Test func tornTailIsReportedAndCutOff() async throws {
        let dir = temporaryDirectory()
        do {
            let store = try EmbeddedStore(directory: dir)
            _ = try await store.put(kind: .routes, id: "1", value: ["uri": "/a"], expectedModifiedIndex: nil)
        }
        let good = fileSize("\(dir)/store.log")
        // A crash in the middle of appending the next record: its header promises more bytes.
        appendBytes("\(dir)/store.log", [0, 0, 0, 200, 1, 2, 3, 4, 123, 34])
        let store = try EmbeddedStore(directory: dir)
        #expect(await store.recoveryNotes.count == 1)
        #expect(await store.recoveryNotes.first?.contains("torn record") == true)
        #expect(fileSize("\(dir)/store.log") == good)
        #expect(try await store.load().entries.count == 1)
    }

    @Test func damageBeforeTheLastRecordRefusesToOpen() async throws {
        let dir = temporaryDirectory()
        do {
            let store = try EmbeddedStore(directory: dir)
            _ = try await store.put(kind: .routes, id: "1", value: ["uri": "/a"], expectedModifiedIndex: nil)
            _ = try await store.put(kind: .routes, id: "2", value: ["uri": "/b"], expectedModifiedIndex: nil)
        }
        // Flip one byte inside the first record's JSON.
        let fd = open("\(dir)/store.log", O_RDWR)
        var byte: UInt8 = 0
        pread(fd, &byte, 1, 12)
        byte ^= 0x20
        pwrite(fd, &byte, 1, 12)
        close(fd)
        #expect(throws: StoreError.self) { _ = try EmbeddedStore(directory: dir) }
    }
}
