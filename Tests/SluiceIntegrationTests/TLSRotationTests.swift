import Foundation
import SluiceCore
import Testing

/// Certificates change live: 100 writes (with deletes and re-creates) while keep-alive TLS
/// clients run. No request fails, no TLS connection is closed, and a handshake made right
/// after each Admin API answer sees the certificate just written.
@Suite(.serialized) struct TLSRotationTests {
    /// Python's http.client over ssl: `threads` keep-alive connections, each counting its
    /// requests, its failures and how often it had to connect; stops when `stopFile` exists
    /// or after 120 s.
    static let loadScript = """
        import http.client, json, os, ssl, sys, threading, time
        port, host, cafile, threads, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        ctx = ssl.create_default_context(cafile=cafile)
        stats = {"ok": 0, "failed": 0, "connects": 0, "errors": []}
        lock = threading.Lock()
        ready = threading.Barrier(threads + 1)
        class Counting(http.client.HTTPSConnection):
            def connect(self):
                with lock: stats["connects"] += 1
                super().connect()
        def run():
            c = Counting("127.0.0.1", port, context=ctx, timeout=10)
            c._tunnel_host = None
            c.host = "127.0.0.1"
            first = True
            deadline = time.time() + 120
            while time.time() < deadline and not os.path.exists(stop):
                try:
                    c.request("GET", "/", headers={"Host": host})
                    r = c.getresponse(); r.read()
                    with lock:
                        if r.status == 200: stats["ok"] += 1
                        else: stats["failed"] += 1; stats["errors"].append(r.status)
                except Exception as e:
                    with lock: stats["failed"] += 1; stats["errors"].append(repr(e)[:120])
                    c.close()
                if first:
                    first = False
                    ready.wait()
        # SNI: http.client sends the connection host; wrap with the route's name instead.
        orig = ctx.wrap_socket
        ctx.wrap_socket = lambda sock, server_hostname=None, **kw: orig(sock, server_hostname=host, **kw)
        ts = [threading.Thread(target=run) for _ in range(threads)]
        for t in ts: t.start()
        ready.wait()
        print("READY", flush=True)
        for t in ts: t.join()
        stats["errors"] = stats["errors"][:5]
        print(json.dumps(stats), flush=True)
        """

    @Test func hundredCertificateChangesUnderLoad() async throws {
        let pki = try await TestPKI.make()
        let certs = [try await pki.issue("rot.example.test"), try await pki.issue("rot.example.test", type: .rsa)]
        let upstream = try await startUpstream("u")
        let gw = try await TLSGateway.start()
        defer { Task { await gw.stop(); await upstream.stop() } }
        let admin = try await gw.adminClient()
        #expect(try await admin.call(.PUT, "/ssls/rot", TLSGateway.sslBody(certs[0], snis: ["rot.example.test"])).status == 201)
        #expect(try await admin.call(.PUT, "/routes/1", #"{"uri":"/*","upstream":{"nodes":{"\#(upstream.address)":1}}}"#).status == 201)

        let stopFile = "\(pki.directory)/stop"
        let threads = 4
        let load = Process()
        load.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        load.arguments = ["python3", "-c", Self.loadScript, String(gw.tlsPort), "rot.example.test", pki.caCert, String(threads), stopFile]
        let out = Pipe()
        load.standardOutput = out
        load.standardError = out
        try load.run()
        defer { if load.isRunning { load.terminate() } }
        let lines = LineReader(out.fileHandleForReading)
        let ready = await lines.next(timeout: 20)
        try #require(ready == "READY", "load clients did not connect: \(ready ?? "nothing")")

        var stale = 0
        for i in 0..<100 {
            let issued = certs[i % 2]
            if i % 10 == 9 {
                #expect(try await admin.call(.DELETE, "/ssls/rot").status == 200)
                #expect(try await gw.servedSerial("rot.example.test") == nil, "deleted at change \(i), still served")
            }
            let r = try await admin.call(.PUT, "/ssls/rot", TLSGateway.sslBody(issued, snis: ["rot.example.test"]))
            #expect(r.status == 200 || r.status == 201, "\(r.json)")
            // The write is live once the Admin API answered: the next handshake has it.
            if !sameSerial(try await gw.servedSerial("rot.example.test"), issued.serial) { stale += 1 }
        }
        #expect(stale == 0, "\(stale) of 100 handshakes after a write saw the previous certificate")
        FileManager.default.createFile(atPath: stopFile, contents: nil)
        let summary = await lines.next(timeout: 30)
        let stats = try JSONValue.parse(try #require(summary, "no summary from the load clients"))
        print("TLS rotation under load: \(summary ?? "")")
        #expect(stats["failed"]?.intValue == 0, "\(summary ?? "")")
        #expect(stats["connects"]?.intValue == Int64(threads), "TLS connections were closed and re-made: \(summary ?? "")")
        #expect((stats["ok"]?.intValue ?? 0) >= 100, "too few requests ran during the changes: \(summary ?? "")")
    }
}

/// Lines of a child's output, one at a time, with a deadline.
final class LineReader: @unchecked Sendable {
    // Guarded by `lock`.
    private let lock = NSLock()
    private var buffer = Data()
    private var lines: [String] = []

    init(_ handle: FileHandle) {
        handle.readabilityHandler = { [weak self] h in
            let data = h.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.buffer.append(data)
            while let nl = self.buffer.firstIndex(of: 0x0A) {
                self.lines.append(String(decoding: self.buffer[self.buffer.startIndex..<nl], as: UTF8.self))
                self.buffer = Data(self.buffer[self.buffer.index(after: nl)...])
            }
            self.lock.unlock()
        }
    }

    private func take() -> String? {
        lock.withLock { lines.isEmpty ? nil : lines.removeFirst() }
    }

    func next(timeout: Double) async -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let l = take() { return l }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }
}
