import Foundation
import NIOCore
import NIOEmbedded
import NIOPosix
import SluiceCore
import SluiceProxy
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// 04/Dec/2026:01:12:10 UTC, in nanoseconds since the epoch.
private let dec4 = Int64(1_796_346_730) * 1_000_000_000

private func fullRecord() -> AccessLogRecord {
    AccessLogRecord(
        remoteAddr: "10.1.2.3", remoteUser: "alice", startWallNanos: dec4 - 3_456_789, host: "shop.example.com",
        method: "GET", requestURI: "/api/items?q=1", httpVersion: "HTTP/1.1", status: 200, bodyBytesSent: 1234,
        requestTimeNanos: 3_456_789, referer: "https://example.com/", userAgent: "curl/8.5.0",
        upstreams: [UpstreamAttemptLog(address: "127.0.0.1:8080", status: 200, responseTimeNanos: 2_100_000)],
        upstreamScheme: "http", upstreamHost: "backend.internal", upstreamURI: "/items?q=1", routeID: "api",
        requestID: "b7c1")
}

private func minimalRecord() -> AccessLogRecord {
    AccessLogRecord(
        remoteAddr: "192.0.2.7", startWallNanos: dec4, method: "GET", requestURI: "/nope", status: 404,
        bodyBytesSent: 0, requestTimeNanos: 0)
}

private func line(_ record: AccessLogRecord, _ format: AccessLogFormat) -> String {
    var formatter = AccessLogFormatter(format: format, timeZone: .utc)
    var buffer = ByteBuffer()
    formatter.append(record, to: &buffer)
    return String(buffer: buffer)
}

private func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "sluice-accesslog-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func lines(of path: String) -> [String] {
    guard let data = FileManager.default.contents(atPath: path) else { return [] }
    return String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
}

/// A record whose line names `i`, for the writer tests.
private func numbered(_ i: Int) -> AccessLogRecord {
    var r = fullRecord()
    r.requestURI = "/item/\(i)"
    return r
}

@Suite struct AccessLogFormatTests {
    @Test func textLineWithEveryField() {
        #expect(
            line(fullRecord(), .text)
                == "10.1.2.3 - alice [04/Dec/2026:01:12:10 +0000] shop.example.com \"GET /api/items?q=1 HTTP/1.1\" 200 1234 0.003 "
                + "\"https://example.com/\" \"curl/8.5.0\" 127.0.0.1:8080 200 0.002 \"http://backend.internal/items?q=1\"\n")
    }

    @Test func missingValuesAreDashes() {
        #expect(
            line(minimalRecord(), .text)
                == "192.0.2.7 - - [04/Dec/2026:01:12:10 +0000] - \"GET /nope HTTP/1.1\" 404 0 0.000 \"-\" \"-\" - - - \"-://--\"\n")
    }

    @Test func localAnswerLooksLikeAPISIX() {
        var r = minimalRecord()
        r.host = "127.0.0.1:9080"
        r.upstreamScheme = "http"
        r.upstreamHost = "127.0.0.1:9080"
        r.upstreamURI = ""
        #expect(line(r, .text).hasSuffix(" 404 0 0.000 \"-\" \"-\" - - - \"http://127.0.0.1:9080\"\n"))
    }

    @Test func hostileValuesAreEscaped() {
        var r = minimalRecord()
        r.userAgent = "a\"b\\c\r\nd\u{0}e\u{7F}é"
        r.referer = "\" 200 0"
        r.requestURI = "/x\"y"
        let text = line(r, .text)
        #expect(text.contains("\"a\\x22b\\x5Cc\\x0D\\x0Ad\\x00e\\x7F\\xC3\\xA9\""))
        #expect(text.contains("\"\\x22 200 0\""))
        #expect(text.contains("\"GET /x\\x22y HTTP/1.1\""))
        #expect(text.filter { $0 == "\n" }.count == 1)
        #expect(text.last == "\n")
    }

    @Test func severalUpstreamAttempts() {
        var r = minimalRecord()
        r.status = 200
        r.upstreams = [
            UpstreamAttemptLog(address: "127.0.0.1:1", status: nil, responseTimeNanos: 1_000_000),
            UpstreamAttemptLog(address: "127.0.0.1:2", status: 502, responseTimeNanos: nil),
            UpstreamAttemptLog(address: "[::1]:3", status: 200, responseTimeNanos: 20_999_999),
        ]
        #expect(line(r, .text).contains(" 127.0.0.1:1, 127.0.0.1:2, [::1]:3 -, 502, 200 0.001, -, 0.020 "))
        let json = try? JSONValue.parse(line(r, .json))
        #expect(json?["upstream_addr"] == .string("127.0.0.1:1, 127.0.0.1:2, [::1]:3"))
        #expect(json?["upstream_status"] == .string("-, 502, 200"))
        #expect(json?["upstream_response_time"] == .string("0.001, -, 0.020"))
    }

    @Test func requestTimeHasMillisecondResolution() {
        var r = minimalRecord()
        r.requestTimeNanos = 12_345_678_901
        #expect(line(r, .text).contains(" 404 0 12.345 "))
        r.requestTimeNanos = -5
        #expect(line(r, .text).contains(" 404 0 0.000 "))
        r.requestTimeNanos = 999_999
        #expect(line(r, .text).contains(" 404 0 0.000 "))
        r.requestTimeNanos = 1_000_000
        #expect(line(r, .text).contains(" 404 0 0.001 "))
    }

    @Test func jsonHasEveryFieldWithItsType() throws {
        let text = line(fullRecord(), .json)
        #expect(text.hasSuffix("}\n"))
        let json = try JSONValue.parse(text)
        let expected: [String: JSONValue] = [
            "remote_addr": "10.1.2.3", "remote_user": "alice", "time_local": "04/Dec/2026:01:12:10 +0000",
            "http_host": "shop.example.com", "request": "GET /api/items?q=1 HTTP/1.1", "status": 200,
            "body_bytes_sent": 1234, "request_time": 0.003, "http_referer": "https://example.com/",
            "http_user_agent": "curl/8.5.0", "upstream_addr": "127.0.0.1:8080", "upstream_status": "200",
            "upstream_response_time": "0.002", "upstream_scheme": "http", "upstream_host": "backend.internal",
            "upstream_uri": "/items?q=1", "route_id": "api", "request_id": "b7c1",
        ]
        #expect(json.objectValue == expected)
    }

    @Test func jsonMissingValuesAreNull() throws {
        let json = try JSONValue.parse(line(minimalRecord(), .json))
        for key in [
            "remote_user", "http_host", "http_referer", "http_user_agent", "upstream_addr", "upstream_status",
            "upstream_response_time", "upstream_scheme", "upstream_host", "upstream_uri", "route_id", "request_id",
        ] {
            #expect(json[key] == .null, "\(key)")
        }
        #expect(json["status"] == .int(404))
        #expect(json["request_time"]?.doubleValue == 0)
        #expect(json.objectValue?.count == 18)
    }

    /// The gateway's reason for an answer it made itself is `error`, present only then.
    @Test func jsonCarriesTheGatewaysReason() throws {
        var r = minimalRecord()
        r.status = 502
        r.error = "no upstream \"node\" could be reached"
        let json = try JSONValue.parse(line(r, .json))
        #expect(json["error"] == .string("no upstream \"node\" could be reached"))
        #expect(json.objectValue?.count == 19)
        #expect(!line(r, .text).contains("could be reached"))
    }

    @Test func jsonEscapesHostileValues() throws {
        var r = minimalRecord()
        let hostile = "a\"b\\c\r\nd\u{0}e\u{1F}f\u{7F}é\t"
        r.userAgent = hostile
        r.routeID = "\u{8}\u{C}"
        let text = line(r, .json)
        #expect(text.filter { $0 == "\n" }.count == 1)
        let json = try JSONValue.parse(text)
        #expect(json["http_user_agent"] == .string(hostile))
        #expect(json["route_id"] == .string("\u{8}\u{C}"))
    }

    @Test func timeLocalFormat() {
        var utc = AccessLogFormatter(format: .text, timeZone: .utc)
        #expect(String(decoding: utc.timeLocal(wallNanos: dec4), as: UTF8.self) == "04/Dec/2026:01:12:10 +0000")
        #expect(String(decoding: utc.timeLocal(wallNanos: dec4 + 999_999_999), as: UTF8.self) == "04/Dec/2026:01:12:10 +0000")
        #expect(String(decoding: utc.timeLocal(wallNanos: dec4 + 1_000_000_000), as: UTF8.self) == "04/Dec/2026:01:12:11 +0000")
        #expect(String(decoding: utc.timeLocal(wallNanos: 0), as: UTF8.self) == "01/Jan/1970:00:00:00 +0000")
        #expect(String(decoding: utc.timeLocal(wallNanos: -1), as: UTF8.self) == "31/Dec/1969:23:59:59 +0000")
        // 2024 is a leap year.
        let leap = Int64(1_709_208_000) * 1_000_000_000
        #expect(String(decoding: utc.timeLocal(wallNanos: leap), as: UTF8.self) == "29/Feb/2024:12:00:00 +0000")

        var local = AccessLogFormatter(format: .text, timeZone: .local)
        let text = String(decoding: local.timeLocal(wallNanos: dec4), as: UTF8.self)
        #expect(text.utf8.count == 26)
        let offset = text.suffix(5)
        #expect(offset.first == "+" || offset.first == "-")
        let digits = offset.dropFirst().allSatisfy { $0.isNumber }
        #expect(digits)
    }

    @Test func timeIsTheEndOfTheRequest() {
        var r = minimalRecord()
        r.startWallNanos = dec4 - 2_500_000_000
        r.requestTimeNanos = 2_500_000_000
        #expect(line(r, .text).contains("[04/Dec/2026:01:12:10 +0000]"))
    }
}

@Suite(.serialized) struct AccessLogWriterTests {
    @Test func openErrorNamesThePath() {
        let path = "/nonexistent-\(UUID().uuidString)/access.log"
        #expect {
            _ = try AccessLog(destination: .file(path), format: .text)
        } throws: { error in
            "\(error)".contains(path) && "\(error)".contains("No such file")
        }
    }

    @Test func createsTheFileWithMode0644() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .text)
        log.close()
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        // 0644 less the umask: never more than 0644, and the owner can read and write.
        #expect(mode.map { $0 & 0o777 & ~0o644 } == 0)
        #expect(mode.map { $0 & 0o600 } == 0o600)
    }

    @Test func tenThousandLinesFromTwoLoops() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .text, timeZone: .utc)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let loops = Array(group.makeIterator())
        let futures = loops.enumerated().map { n, loop in
            loop.submit {
                let buffer = AccessLogBuffer(log: log, eventLoop: loop)
                for i in stride(from: n, to: 10_000, by: 2) { buffer.append(numbered(i)) }
                buffer.flush()
            }
        }
        for f in futures { try f.wait() }
        #expect(log.flush(timeout: .seconds(10)))
        log.close()

        let written = lines(of: path)
        #expect(written.count == 10_000)
        let expected = Set((0..<10_000).map { line(numbered($0), .text).dropLast() }.map(String.init))
        #expect(Set(written) == expected)
        #expect(log.linesWritten == 10_000)
        #expect(log.droppedLines == 0)
    }

    @Test func timerHandsOffAPartialChunk() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .json, timeZone: .utc)
        defer { log.close() }
        let loop = EmbeddedEventLoop()
        let buffer = AccessLogBuffer(log: log, eventLoop: loop, flushInterval: .milliseconds(100))
        buffer.append(minimalRecord())
        buffer.append(minimalRecord())
        #expect(buffer.bufferedLines == 2)
        loop.advanceTime(by: .milliseconds(99))
        log.flush()
        #expect(lines(of: path).isEmpty)
        loop.advanceTime(by: .milliseconds(1))
        #expect(buffer.bufferedLines == 0)
        log.flush()
        #expect(lines(of: path).count == 2)
        // An empty buffer arms no timer; the next line arms one again.
        loop.advanceTime(by: .seconds(1))
        buffer.append(minimalRecord())
        loop.advanceTime(by: .milliseconds(100))
        log.flush()
        #expect(lines(of: path).count == 3)
        #expect(lines(of: path).allSatisfy { (try? JSONValue.parse($0))?["status"] == .int(404) })
    }

    @Test func fullChunksAreHandedOffWithoutTheTimer() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .text, timeZone: .utc)
        defer { log.close() }
        let loop = EmbeddedEventLoop()
        let buffer = AccessLogBuffer(log: log, eventLoop: loop, chunkBytes: 1024)
        let lineBytes = line(numbered(0), .text).utf8.count
        let count = 1024 / lineBytes + 1
        for i in 0..<count { buffer.append(numbered(i)) }
        #expect(buffer.bufferedLines == 0)
        log.flush()
        #expect(lines(of: path).count == count)
    }

    @Test func reopenMovesNewLinesToANewFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .text, timeZone: .utc)
        defer { log.close() }
        let loop = EmbeddedEventLoop()
        let buffer = AccessLogBuffer(log: log, eventLoop: loop)
        for i in 0..<10 { buffer.append(numbered(i)) }
        buffer.flush()
        log.flush()

        #expect(rename(path, path + ".1") == 0)
        // Lines written before the reopen still go to the renamed file.
        buffer.append(numbered(10))
        buffer.flush()
        log.flush()
        log.reopen()
        for i in 11..<15 { buffer.append(numbered(i)) }
        buffer.flush()
        log.flush()

        let old = lines(of: path + ".1")
        let new = lines(of: path)
        #expect(old == (0...10).map { String(line(numbered($0), .text).dropLast()) })
        #expect(new == (11..<15).map { String(line(numbered($0), .text).dropLast()) })
        #expect(log.writeErrors == 0)
    }

    @Test func reopenFailureKeepsTheOldFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sub = dir + "/logs"
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        let path = sub + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .text, timeZone: .utc)
        defer { log.close() }
        let loop = EmbeddedEventLoop()
        let buffer = AccessLogBuffer(log: log, eventLoop: loop)
        #expect(rename(sub, dir + "/moved") == 0)
        log.reopen()
        buffer.append(numbered(1))
        buffer.flush()
        log.flush()
        #expect(log.writeErrors == 1)
        #expect(lines(of: dir + "/moved/access.log").count == 1)
    }

    @Test func blockedWriterDropsInsteadOfBlocking() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fifo = dir + "/fifo"
        #expect(mkfifo(fifo, 0o600) == 0)
        // A reader that reads nothing until the end: the pipe fills and write(2) blocks.
        let reader = open(fifo, O_RDONLY | O_NONBLOCK)
        #expect(reader >= 0)
        let log = try AccessLog(destination: .file(fifo), format: .text, timeZone: .utc, maxPendingBytes: 64 * 1024)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let total = 20_000
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            try loop.submit {
                let buffer = AccessLogBuffer(log: log, eventLoop: loop, chunkBytes: 4096)
                for i in 0..<total { buffer.append(numbered(i)) }
                buffer.flush()
            }.wait()
        }
        #expect(elapsed < .seconds(5))
        #expect(log.droppedLines > 0)
        #expect(log.droppedBytes > 0)

        // Now read everything; every line was either written whole or counted as dropped.
        _ = fcntl(reader, F_SETFL, fcntl(reader, F_GETFL) & ~O_NONBLOCK)
        let received = Mutex(0)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            var scratch = [UInt8](repeating: 0, count: 65_536)
            var newlines = 0
            while true {
                let n = scratch.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                newlines += scratch[0..<n].reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            }
            received.withLock { $0 = newlines }
            done.signal()
        }
        #expect(log.close(timeout: .seconds(10)))
        #expect(done.wait(timeout: .now() + 10) == .success)
        _ = close(reader)
        let got = received.withLock { $0 }
        #expect(got + log.droppedLines == total)
        #expect(got == log.linesWritten)
    }

    @Test func linesAfterCloseAreDropped() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/access.log"
        let log = try AccessLog(destination: .file(path), format: .text, timeZone: .utc)
        let loop = EmbeddedEventLoop()
        let buffer = AccessLogBuffer(log: log, eventLoop: loop)
        buffer.append(numbered(1))
        buffer.flush()
        #expect(log.close())
        buffer.append(numbered(2))
        buffer.flush()
        #expect(log.droppedLines == 1)
        #expect(lines(of: path).count == 1)
    }
}
