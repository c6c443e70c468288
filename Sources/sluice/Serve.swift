import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore
import SluiceCore
import SluiceServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: proxy listeners with live configuration.")

    @Option(name: .customLong("config"), help: "Settings file (default: conf/sluice.yaml when present).")
    var configFile: String?

    @Option(name: .customLong("proxy-listen"), help: "HTTP proxy listener HOST:PORT (repeatable; default 0.0.0.0:9080).")
    var proxyListen: [String] = []

    @Option(help: "Read-only mode: routes, services and upstreams come from this YAML file, re-read when it changes.")
    var standalone: String?

    @Option(help: "Event-loop threads (default: number of cores).")
    var workers: Int?

    @Option(name: .customLong("shutdown-timeout"), help: "Seconds in-flight requests get to finish on SIGTERM/SIGINT (default 30).")
    var shutdownTimeout: Double?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default info).")
    var logLevel: String?

    @Option(name: .customLong("log-format"), help: "text or json (default text).")
    var logFormat: String?

    func run() async throws {
        let settings = try ServeSettings.resolve(flags: self)
        LoggingSystem.bootstrap { label in
            var handler: LogHandler = settings.logFormat == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let logger = Logger(label: "sluice")

        var config = GatewayServer.Configuration()
        config.proxyListen = settings.proxyListen
        config.workers = settings.workers
        let server = try await GatewayServer.make(configuration: config, logger: logger)

        var watcher: Task<Void, Never>? = nil
        if let file = settings.standalone {
            let source = StandaloneSource(path: file, server: server, logger: logger)
            do {
                let fingerprint = try await source.loadInitial()
                watcher = Task { await source.watch(from: fingerprint) }
            } catch {
                FileHandle.standardError.write(Data("sluice: --standalone: \(error)\n".utf8))
                await server.shutdown(gracePeriod: .zero)
                throw ExitCode(2)
            }
        } else {
            logger.warning("no configuration source: start with --standalone FILE to serve routes (the Admin API is not in this build yet)")
        }

        do {
            try await server.start()
        } catch {
            logger.critical("cannot listen", metadata: ["error": "\(error)"])
            await server.shutdown(gracePeriod: .zero)
            throw ExitCode(1)
        }

        let signal = await Signals.wait(for: [SIGTERM, SIGINT])
        logger.info("shutting down", metadata: ["signal": "\(signal)", "grace_seconds": "\(settings.shutdownTimeout)"])
        watcher?.cancel()
        await server.shutdown(gracePeriod: TimeAmount.nanoseconds(Int64(settings.shutdownTimeout * 1e9)))
        logger.info("stopped")
    }
}

/// Flag values merged over the settings file.
struct ServeSettings {
    var proxyListen: [ListenAddress] = [ListenAddress(host: "0.0.0.0", port: 9080)]
    var standalone: String?
    var workers = System.coreCount
    var shutdownTimeout = 30.0
    var logLevel: Logger.Level = .info
    var logFormat = "text"

    static func fail(_ message: String) -> ValidationError { ValidationError(message) }

    static func resolve(flags: Serve) throws -> ServeSettings {
        var s = ServeSettings()
        var file: [String: JSONValue] = [:]
        let path = flags.configFile ?? (FileManager.default.fileExists(atPath: "conf/sluice.yaml") ? "conf/sluice.yaml" : nil)
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw fail("--config: cannot read \(path); pass an existing settings file")
            }
            do {
                guard case .object(let o) = try DeclarativeFile.parse(String(decoding: data, as: UTF8.self)) else {
                    throw fail("\(path): must be a mapping of settings")
                }
                file = o
            } catch let errors as ConfigErrors {
                throw fail("\(path): \(errors)")
            }
            let known: Set<String> = ["proxy_listen", "standalone", "workers", "shutdown_timeout", "log_level", "log_format"]
            for key in file.keys.sorted() where !known.contains(key) {
                throw fail("\(path): \(key): unknown setting (known: \(known.sorted().joined(separator: ", ")))")
            }
        }
        var listens = flags.proxyListen
        if listens.isEmpty, let v = file["proxy_listen"] {
            switch v {
            case .string(let one): listens = [one]
            case .array(let many): listens = many.compactMap(\.stringValue)
            default: throw fail("proxy_listen: must be HOST:PORT or a list of them")
            }
        }
        if !listens.isEmpty {
            s.proxyListen = try listens.map { text in
                guard let a = ListenAddress(text) else { throw fail("--proxy-listen: \"\(text)\" is not HOST:PORT") }
                return a
            }
        }
        s.standalone = flags.standalone ?? file["standalone"]?.stringValue
        if let w = flags.workers ?? file["workers"]?.intValue.map(Int.init) {
            guard (1...1024).contains(w) else { throw fail("--workers: must be 1-1024, got \(w)") }
            s.workers = w
        }
        if let t = flags.shutdownTimeout ?? file["shutdown_timeout"]?.doubleValue {
            guard t >= 0 else { throw fail("--shutdown-timeout: must be >= 0") }
            s.shutdownTimeout = t
        }
        if let l = flags.logLevel ?? file["log_level"]?.stringValue {
            guard let level = Logger.Level(rawValue: l) else {
                throw fail("--log-level: must be trace, debug, info, notice, warning, error or critical")
            }
            s.logLevel = level
        }
        if let f = flags.logFormat ?? file["log_format"]?.stringValue {
            guard f == "json" || f == "text" else { throw fail("--log-format: must be text or json") }
            s.logFormat = f
        }
        return s
    }
}

/// Waits for the first of the given signals (handled, not fatal).
enum Signals {
    static func wait(for signals: [Int32]) async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            let once = Once()
            var sources: [DispatchSourceSignal] = []
            for sig in signals {
                Foundation.signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    if once.claim() { continuation.resume(returning: sig) }
                }
                source.resume()
                sources.append(source)
            }
            Retained.sources = sources
        }
    }

    final class Once: @unchecked Sendable {
        // Guarded by `lock`; claimed at most once.
        private let lock = NSLock()
        private var done = false
        func claim() -> Bool {
            lock.lock()
            defer { lock.unlock() }
            if done { return false }
            done = true
            return true
        }
    }

    enum Retained {
        nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
    }
}

/// One JSON object per log line on stderr.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: JSONValue] = [
            "ts": .string(ISO8601DateFormatter().string(from: Date())),
            "level": .string(event.level.rawValue),
            "msg": .string("\(event.message)"),
            "logger": .string(label),
        ]
        for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[k] = .string("\(v)") }
        FileHandle.standardError.write(Data((JSONValue.object(object).serialized() + "\n").utf8))
    }
}
