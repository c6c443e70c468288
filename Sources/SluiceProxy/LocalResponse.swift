import NIOCore
import NIOHTTP1

/// The body of the gateway's own answers: `{"error_msg": "..."}`.
enum LocalResponse {
    static let server = "sluice"

    /// The head of an answer with `body` (from `body(_:)`).
    static func head(_ status: HTTPResponseStatus, body: ByteBuffer) -> ResponseHead {
        var fields = HeaderBlock()
        fields.appendUnchecked(name: "Content-Type", value: "application/json")
        fields.appendUnchecked(name: "Content-Length", value: String(body.readableBytes))
        fields.appendUnchecked(name: "Server", value: server)
        return ResponseHead(status: Int(status.code), fields: fields)
    }

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
