import Foundation
import Logging
import SluiceAdmin
import SluiceCore
import SluiceTLS
import Synchronization

/// `--standalone FILE`: the config comes from a file, re-read when it changes. An edit that
/// does not validate is logged with every error and the previous config stays live.
public final class StandaloneSource: Sendable {
    public let path: String
    private let service: ConfigService
    private let logger: Logger
    private let pollInterval: Duration
    private let counters = Mutex((applied: 0, rejected: 0))

    /// File versions applied and rejected since start (for the control API and tests).
    public var appliedEdits: Int { counters.withLock { $0.applied } }
    public var rejectedEdits: Int { counters.withLock { $0.rejected } }

    /// Decrypts private keys written in the file encrypted (APISIX's keyring form).
    private let keyring: Keyring?

    public init(path: String, service: ConfigService, logger: Logger, pollInterval: Duration = .seconds(1), keyring: Keyring? = nil) {
        self.keyring = keyring
        self.path = path
        self.service = service
        self.logger = logger
        self.pollInterval = pollInterval
    }

    public enum LoadError: Error, CustomStringConvertible {
        case unreadable(String, String)
        case invalid(String, ConfigErrors)
        public var description: String {
            switch self {
            case .unreadable(let path, let why): return "cannot read \(path): \(why)"
            case .invalid(let path, let errors): return "\(path) is invalid:\n\(errors)"
            }
        }
    }

    static func read(_ path: String) throws(LoadError) -> (String, Fingerprint) {
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let text = String(decoding: data, as: UTF8.self)
            return (text, Fingerprint(data))
        } catch {
            throw .unreadable(path, "\(error.localizedDescription)")
        }
    }

    /// Loads the file once; throws when it cannot be read or is invalid.
    @discardableResult
    public func loadInitial() async throws -> Fingerprint {
        let (text, fingerprint) = try Self.read(path)
        switch DeclarativeFile.loadWithObjects(text, keyring: keyring) {
        case .success(let loaded):
            try await service.replaceAll(loaded.objects, state: loaded.state)
            logger.info("standalone config loaded", metadata: ["file": "\(path)", "routes": "\(loaded.state.routes.count)"])
            return fingerprint
        case .failure(let errors):
            throw LoadError.invalid(path, errors)
        }
    }

    /// Polls the file and applies each valid change until the task is cancelled.
    public func watch(from initial: Fingerprint) async {
        var last = initial
        while !Task.isCancelled {
            try? await Task.sleep(for: pollInterval)
            guard let (text, fingerprint) = try? Self.read(path), fingerprint != last else { continue }
            last = fingerprint
            switch DeclarativeFile.loadWithObjects(text, keyring: keyring) {
            case .success(let loaded):
                do {
                    try await service.replaceAll(loaded.objects, state: loaded.state)
                    counters.withLock { $0.applied += 1 }
                    logger.info("standalone config reloaded", metadata: ["file": "\(path)", "routes": "\(loaded.state.routes.count)"])
                } catch {
                    logger.error("applying standalone config failed", metadata: ["error": "\(error)"])
                }
            case .failure(let errors):
                counters.withLock { $0.rejected += 1 }
                for e in errors.errors {
                    logger.error("standalone config rejected; previous config stays live", metadata: ["file": "\(path)", "error": "\(e)"])
                }
            }
        }
    }

    /// Content identity of the file: size plus a 64-bit FNV-1a hash.
    public struct Fingerprint: Sendable, Hashable {
        let size: Int
        let hash: UInt64
        init(_ data: Data) {
            size = data.count
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in data {
                h ^= UInt64(b)
                h = h &* 0x0000_0100_0000_01B3
            }
            hash = h
        }
    }
}
