import NIOHTTP1
import SluiceCore

/// Checks a request head for what could be framed two ways, and builds the head sent upstream.
enum HeaderRules {
    enum Rejection: Error, Equatable {
        case badRequest(String)
        case notImplemented(String)
        case uriTooLong
    }

    /// Refuses heads that are ambiguous to frame or to route. Runs before routing.
    static func check(_ head: HTTPRequestHead, maxURIBytes: Int) -> Rejection? {
        if head.uri.utf8.count > maxURIBytes { return .uriTooLong }
        var contentLengths = 0
        var transferEncoding: String? = nil
        var hosts = 0
        for (name, value) in head.headers {
            if value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) {
                return .badRequest("invalid header value")
            }
            switch name.utf8.count {
            case 4 where name.isASCII(caseInsensitivelyEqualTo: "host"):
                hosts += 1
            case 14 where name.isASCII(caseInsensitivelyEqualTo: "content-length"):
                contentLengths += 1
            case 17 where name.isASCII(caseInsensitivelyEqualTo: "transfer-encoding"):
                if transferEncoding != nil { return .badRequest("duplicate Transfer-Encoding") }
                transferEncoding = value
            default:
                break
            }
        }
        if contentLengths > 1 { return .badRequest("duplicate Content-Length") }
        if let te = transferEncoding {
            if contentLengths > 0 { return .badRequest("both Content-Length and Transfer-Encoding") }
            if head.version.minor == 0 && head.version.major == 1 { return .badRequest("Transfer-Encoding in HTTP/1.0") }
            if te.trimmingWhitespace().lowercased() != "chunked" { return .notImplemented("unsupported Transfer-Encoding") }
        }
        if hosts > 1 { return .badRequest("duplicate Host") }
        if hosts == 0 && head.version.major == 1 && head.version.minor >= 1 { return .badRequest("missing Host") }
        return nil
    }

    /// Connection options other than keep-alive and close: the names of further hop-by-hop
    /// headers, lower-cased. Empty (no allocation) for the usual `keep-alive` / `close`.
    static func connectionTokens(_ headers: HTTPHeaders) -> [String] {
        guard headers.contains(name: "connection") else { return [] }
        var tokens: [String] = []
        for value in headers["connection"] {
            if value.isASCII(caseInsensitivelyEqualTo: "keep-alive") || value.isASCII(caseInsensitivelyEqualTo: "close") { continue }
            for t in value.split(separator: ",") {
                let token = String(t).trimmingWhitespace().lowercased()
                if token != "keep-alive" && token != "close" { tokens.append(token) }
            }
        }
        return tokens
    }

    /// Request headers not forwarded as received: hop-by-hop ones, and those the gateway sets
    /// (`Host` is replaced separately).
    static func isDroppedRequestHeader(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2: return name.isASCII(caseInsensitivelyEqualTo: "te")
        case 6: return name.isASCII(caseInsensitivelyEqualTo: "expect")
        case 7: return name.isASCII(caseInsensitivelyEqualTo: "trailer") || name.isASCII(caseInsensitivelyEqualTo: "upgrade")
        case 9: return name.isASCII(caseInsensitivelyEqualTo: "x-real-ip")
        case 10: return name.isASCII(caseInsensitivelyEqualTo: "connection") || name.isASCII(caseInsensitivelyEqualTo: "keep-alive")
        case 15: return name.isASCII(caseInsensitivelyEqualTo: "x-forwarded-for")
        case 16:
            return name.isASCII(caseInsensitivelyEqualTo: "proxy-connection") || name.isASCII(caseInsensitivelyEqualTo: "x-forwarded-host")
                || name.isASCII(caseInsensitivelyEqualTo: "x-forwarded-port")
        case 17: return name.isASCII(caseInsensitivelyEqualTo: "x-forwarded-proto")
        case 18: return name.isASCII(caseInsensitivelyEqualTo: "proxy-authenticate")
        case 19: return name.isASCII(caseInsensitivelyEqualTo: "proxy-authorization")
        default: return false
        }
    }

    /// Response headers not forwarded: hop-by-hop ones.
    static func isDroppedResponseHeader(_ name: String) -> Bool {
        switch name.utf8.count {
        case 2: return name.isASCII(caseInsensitivelyEqualTo: "te")
        case 7: return name.isASCII(caseInsensitivelyEqualTo: "trailer") || name.isASCII(caseInsensitivelyEqualTo: "upgrade")
        case 10: return name.isASCII(caseInsensitivelyEqualTo: "connection") || name.isASCII(caseInsensitivelyEqualTo: "keep-alive")
        case 16: return name.isASCII(caseInsensitivelyEqualTo: "proxy-connection")
        default: return false
        }
    }

    struct ClientInfo {
        var address: String
        var hostHeader: String?
        var scheme: String
        var serverPort: String
    }

    /// The head sent upstream: hop-by-hop headers removed, forwarding headers set, the
    /// normalized path, and `Host` per `pass_host`.
    static func upstreamHead(
        _ head: HTTPRequestHead, target: RequestPath, client: ClientInfo, host: String, upgrade: String?
    ) -> HTTPRequestHead {
        let tokens = connectionTokens(head.headers)
        var headers = head.headers
        var forwardedFor: String? = nil
        // Usually only Host is among the dropped ones: look first, rebuild only when needed.
        var dropCount = 0
        for (name, value) in head.headers where isDroppedRequestHeader(name) || (!tokens.isEmpty && tokens.contains(where: { name.isASCII(caseInsensitivelyEqualTo: $0) })) {
            dropCount += 1
            if name.utf8.count == 15 && name.isASCII(caseInsensitivelyEqualTo: "x-forwarded-for") {
                forwardedFor = forwardedFor.map { "\($0), \(value)" } ?? value
            }
        }
        if dropCount > 0 {
            headers = HTTPHeaders()
            headers.reserveCapacity(head.headers.count - dropCount + 6)
            for (name, value) in head.headers {
                if isDroppedRequestHeader(name) { continue }
                if !tokens.isEmpty && tokens.contains(where: { name.isASCII(caseInsensitivelyEqualTo: $0) }) { continue }
                headers.add(name: name, value: value)
            }
        }
        headers.replaceOrAdd(name: "Host", value: host)
        headers.add(name: "X-Forwarded-For", value: forwardedFor.map { "\($0), \(client.address)" } ?? client.address)
        headers.add(name: "X-Real-IP", value: client.address)
        headers.add(name: "X-Forwarded-Proto", value: client.scheme)
        if let h = client.hostHeader { headers.add(name: "X-Forwarded-Host", value: h) }
        headers.add(name: "X-Forwarded-Port", value: client.serverPort)
        if let upgrade {
            headers.add(name: "Connection", value: "upgrade")
            headers.add(name: "Upgrade", value: upgrade)
        }
        var uri = target.path
        if let q = target.query {
            uri += "?"
            uri += q
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: uri, headers: headers)
    }

    /// The response head sent downstream: hop-by-hop headers removed.
    static func downstreamHead(_ head: HTTPResponseHead, close: Bool, upgrade: Bool) -> HTTPResponseHead {
        let tokens = connectionTokens(head.headers)
        var headers = head.headers
        var needsRebuild = false
        for (name, _) in head.headers where isDroppedResponseHeader(name) || (!tokens.isEmpty && tokens.contains(where: { name.isASCII(caseInsensitivelyEqualTo: $0) })) {
            needsRebuild = true
            break
        }
        if needsRebuild {
            headers = HTTPHeaders()
            headers.reserveCapacity(head.headers.count + 1)
            for (name, value) in head.headers {
                if isDroppedResponseHeader(name) { continue }
                if !tokens.isEmpty && tokens.contains(where: { name.isASCII(caseInsensitivelyEqualTo: $0) }) { continue }
                headers.add(name: name, value: value)
            }
        }
        if upgrade {
            headers.add(name: "Connection", value: "upgrade")
            if let u = head.headers.first(name: "upgrade") { headers.add(name: "Upgrade", value: u) }
        } else if close {
            headers.add(name: "Connection", value: "close")
        }
        return HTTPResponseHead(version: .http1_1, status: head.status, headers: headers)
    }
}

extension String {
    /// ASCII case-insensitive comparison with a lower-case ASCII string, without allocating.
    @inline(__always)
    func isASCII(caseInsensitivelyEqualTo lower: String) -> Bool {
        let a = self.utf8, b = lower.utf8
        guard a.count == b.count else { return false }
        var i = b.startIndex
        for c in a {
            let folded = (c >= 0x41 && c <= 0x5A) ? c | 0x20 : c
            if folded != b[i] { return false }
            i = b.index(after: i)
        }
        return true
    }
}
