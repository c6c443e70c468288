#if canImport(Glibc)
import Glibc
#endif

/// The Admin API key when none is configured: generated at first start, kept in the data
/// dir with mode 0600, and announced once. There is no built-in default key.
public enum AdminKey {
    public enum Outcome: Sendable {
        case loaded(String)
        case generated(String)
    }

    public static func loadOrGenerate(dataDirectory: String) throws -> Outcome {
        let path = "\(dataDirectory)/admin.key"
        if let existing = read(path) {
            let key = existing.filter { !$0.isWhitespace }
            if key.count >= 16 { return .loaded(key) }
        }
        var rng = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef")
        let key = String((0..<32).map { _ in hex[Int(rng.next() % 16)] })
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw KeyError(message: "\(path): cannot write the generated Admin API key (errno \(errno))") }
        defer { close(fd) }
        fchmod(fd, 0o600)
        let bytes = Array((key + "\n").utf8)
        guard bytes.withUnsafeBytes({ write(fd, $0.baseAddress!, $0.count) }) == bytes.count, fsync(fd) == 0 else {
            throw KeyError(message: "\(path): cannot write the generated Admin API key (errno \(errno))")
        }
        return .generated(key)
    }

    struct KeyError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }

    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}
