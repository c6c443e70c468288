import NIOCore
import NIOHTTP1
import NIOPosix
import SluiceCore
import SluiceHTTPClient

/// An error from etcd or from reaching it.
public struct EtcdError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// No endpoint answered.
        case unavailable
        /// etcd answered with an error status.
        case server(status: Int)
        /// The answer was not what the gateway documents.
        case protocolError
        /// The watch's start revision was compacted away.
        case compacted(revision: Int64)
        /// The watch delivered nothing (no event, no progress notification) and no probe
        /// confirmed it within the idle timeout, so it was closed. `memberAnswered`: a probe
        /// of the same member did answer in that time (the store moved on, the watch said
        /// nothing about it), so a replacement can be tried at once.
        case watchSilent(memberAnswered: Bool)
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// One keep-alive HTTP/1.1 connection to an etcd member's JSON gateway (`/v3/...`), one
/// request at a time. Unary calls only; watches have connections of their own.
final class EtcdConnection: Sendable {
    private let http: HTTP1Connection
    let endpoint: EtcdEndpoint

    static func connect(_ endpoint: EtcdEndpoint, group: EventLoopGroup, timeout: TimeAmount) async throws -> EtcdConnection {
        try endpoint.checkConnectable()
        return EtcdConnection(http: try await HTTP1Connection.connect(host: endpoint.host, port: endpoint.port, group: group, timeout: timeout), endpoint: endpoint)
    }

    private init(http: HTTP1Connection, endpoint: EtcdEndpoint) {
        self.http = http
        self.endpoint = endpoint
    }

    var isActive: Bool { http.isActive }

    /// POSTs `body` to `path` and returns the decoded JSON answer.
    func post(_ path: String, _ body: JSONValue, timeout: TimeAmount) async throws -> JSONValue {
        let response: HTTP1Response
        do {
            response = try await http.request(.POST, path, headers: [("Content-Type", "application/json")], body: body.serializedBytes(), timeout: timeout)
        } catch {
            throw EtcdError(.unavailable, "etcd \(endpoint) \(path): \(error)")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(response.body)
        } catch {
            throw EtcdError(.protocolError, "etcd \(endpoint) answered \(path) with invalid JSON: \(error)")
        }
        guard response.status == 200 else {
            let message = json["message"]?.stringValue ?? json["error"]?.stringValue ?? "status \(response.status)"
            throw EtcdError(.server(status: response.status), "etcd \(endpoint) \(path): \(message)")
        }
        return json
    }

    func close() async {
        await http.close()
    }
}

/// `host:port` of one etcd member, parsed from `http://127.0.0.1:2379`.
public struct EtcdEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(url: String) {
        var rest = Substring(url)
        if rest.hasPrefix("http://") { rest = rest.dropFirst(7) } else if rest.hasPrefix("https://") { return nil }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard let (host, port) = UpstreamNode.splitAddress(String(rest)), !host.isEmpty else { return nil }
        guard Self.ports.contains(port ?? 2379) else { return nil }
        self.host = host
        self.port = port ?? 2379
    }

    static let ports = 1...65535

    /// NIO traps on a port outside 0...65535: refused before any connect.
    func checkConnectable() throws {
        guard Self.ports.contains(port) else { throw EtcdError(.unavailable, "etcd endpoint \(self): port out of range") }
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
