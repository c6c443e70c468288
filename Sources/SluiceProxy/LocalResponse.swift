import NIOCore
import NIOHTTP1

/// The gateway's own answers, shaped as APISIX's: an error it makes with no body of its own
/// (no route's upstream, no node reachable, a timeout, a plugin refusing without a message)
/// is NGINX's HTML error page, and "no route" is `{"error_msg":"404 Route Not Found"}`.
enum LocalResponse {
    static let server = "sluice"
    /// NGINX's type for its pages and for text a Lua plugin returns (`charset utf-8`).
    static let htmlType = "text/html; charset=utf-8"
    static let textType = "text/plain; charset=utf-8"

    /// The head of an answer with `body` and `contentType`.
    static func head(_ status: HTTPResponseStatus, body: ByteBuffer, contentType: String = htmlType) -> ResponseHead {
        var fields = HeaderBlock()
        fields.appendUnchecked(name: "Content-Type", value: contentType)
        fields.appendUnchecked(name: "Content-Length", value: String(body.readableBytes))
        fields.appendUnchecked(name: "Server", value: server)
        return ResponseHead(status: Int(status.code), fields: fields)
    }

    /// The error page for `status`: NGINX's wording, CRLF line ends, a footer naming Sluice.
    /// Statuses NGINX has no page for get a page with their reason phrase.
    static func page(_ status: Int, _ variant: ErrorPageTitles.Variant? = nil) -> ByteBuffer {
        let title = ErrorPageTitles.title(status, variant)
        var buffer = ByteBuffer()
        buffer.reserveCapacity(title.utf8.count * 2 + 96)
        buffer.writeStaticString("<html>\r\n<head><title>")
        buffer.writeString(title)
        buffer.writeStaticString("</title></head>\r\n<body>\r\n<center><h1>")
        buffer.writeString(title)
        buffer.writeStaticString("</h1></center>\r\n<hr><center>sluice</center>\r\n</body>\r\n</html>\r\n")
        return buffer
    }

    /// `{"error_msg": "..."}` and a newline, as APISIX's `core.response.exit(code, {error_msg=...})`.
    static func body(_ message: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(message.utf8.count + 20)
        buffer.writeStaticString("{\"error_msg\":\"")
        for scalar in message.unicodeScalars {
            switch scalar {
            case "\"": buffer.writeStaticString("\\\"")
            case "\\": buffer.writeStaticString("\\\\")
            case "\n": buffer.writeStaticString("\\n")
            default:
                if scalar.value < 0x20 {
                    buffer.writeStaticString(" ")
                } else {
                    buffer.writeString(String(scalar))
                }
            }
        }
        buffer.writeStaticString("\"}\n")
        return buffer
    }
}

/// The titles of NGINX's error pages (`ngx_http_special_response.c`), which APISIX serves for
/// every error it makes without a body. Its own codes 494-497 answer 400 with their titles.
enum ErrorPageTitles {
    /// Which NGINX page an answer of the gateway's own uses, when it is not the status's.
    enum Variant: Sendable {
        case headerTooLarge, noClientCertificate, plainHTTPToHTTPS
    }

    static func title(_ status: Int, _ variant: Variant? = nil) -> String {
        switch variant {
        case .headerTooLarge?: return "400 Request Header Or Cookie Too Large"
        case .noClientCertificate?: return "400 No required SSL certificate was sent"
        case .plainHTTPToHTTPS?: return "400 The plain HTTP request was sent to HTTPS port"
        case nil: break
        }
        switch status {
        case 301: return "301 Moved Permanently"
        case 302: return "302 Found"
        case 303: return "303 See Other"
        case 307: return "307 Temporary Redirect"
        case 308: return "308 Permanent Redirect"
        case 400: return "400 Bad Request"
        case 401: return "401 Authorization Required"
        case 402: return "402 Payment Required"
        case 403: return "403 Forbidden"
        case 404: return "404 Not Found"
        case 405: return "405 Not Allowed"
        case 406: return "406 Not Acceptable"
        case 408: return "408 Request Time-out"
        case 409: return "409 Conflict"
        case 410: return "410 Gone"
        case 411: return "411 Length Required"
        case 412: return "412 Precondition Failed"
        case 413: return "413 Request Entity Too Large"
        case 414: return "414 Request-URI Too Large"
        case 415: return "415 Unsupported Media Type"
        case 416: return "416 Requested Range Not Satisfiable"
        case 421: return "421 Misdirected Request"
        case 429: return "429 Too Many Requests"
        case 500: return "500 Internal Server Error"
        case 501: return "501 Not Implemented"
        case 502: return "502 Bad Gateway"
        case 503: return "503 Service Temporarily Unavailable"
        case 504: return "504 Gateway Time-out"
        case 505: return "505 HTTP Version Not Supported"
        case 507: return "507 Insufficient Storage"
        default:
            let reason = HTTPResponseStatus(statusCode: status).reasonPhrase
            return reason.isEmpty ? String(status) : "\(status) \(reason)"
        }
    }

    /// Whether an empty-bodied answer with `status` gets a page (NGINX sends none for 1xx,
    /// 204, 304 and statuses without one; `HEAD` answers never carry a body anyway).
    static func hasPage(_ status: Int) -> Bool {
        switch status {
        case 301, 302, 303, 307, 308, 400...416, 421, 429, 500...505, 507: return true
        default: return false
        }
    }
}
