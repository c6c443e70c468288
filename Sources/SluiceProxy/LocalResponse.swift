import NIOCore
import NIOHTTP1

/// Responses the gateway writes itself: `{"error_msg": "..."}` with the status.
enum LocalResponse {
    static let server = "sluice"
    static func head(status: HTTPResponseStatus, bodyLength: Int, close: Bool, version: HTTPVersion) -> HTTPResponseHead {
        var headers = HTTPHeaders()
        headers.reserveCapacity(4)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: String(bodyLength))
        headers.add(name: "Server", value: server)
        if close { headers.add(name: "Connection", value: "close") }
        return HTTPResponseHead(version: version.major == 1 && version.minor == 0 ? .http1_0 : .http1_1, status: status, headers: headers)
    }

    static func body(_ message: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: message.utf8.count + 16)
        buffer.writeStaticString("{\"error_msg\":\"")
        for scalar in message.unicodeScalars {
            switch scalar {
            case "\"": buffer.writeStaticString("\\\"")
            case "\\": buffer.writeStaticString("\\\\")
            case "\n": buffer.writeStaticString("\\n")
            default:
                if scalar.value < 0x20 {
                    buffer.writeString(" ")
                } else {
                    buffer.writeString(String(scalar))
                }
            }
        }
        buffer.writeStaticString("\"}\n")
        return buffer
    }
}
