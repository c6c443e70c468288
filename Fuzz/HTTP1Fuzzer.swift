// Built by scripts/fuzz-http1.sh together with Sources/SluiceProxy/HTTP1 and
// Sources/SluiceProxy/Message (not part of the package).
// libFuzzer entry: the first byte picks the target; the rest is the input.
//   0: request reader, whole input, then the same input in pieces: same events.
//   1: response reader (the second byte picks the request method), whole and in pieces,
//      then connectionClosed.
// Any trap, and any difference between the two ways of feeding, is a finding.
import NIOCore
import NIOHTTP1

/// SwiftPM links an executable's entry point as `<module>_main`: it hands over to libFuzzer's
/// driver (whose own `main` is then not linked).
@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("HTTP1Fuzz_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return runDriver(&argc, &argv) { data, size in
        guard let data else { return 0 }
        return fuzz(data, size)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 1 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    // Cut points derived from the input, so that libFuzzer explores them too.
    var cuts: [Int] = []
    var at = 0
    for b in bytes.prefix(16) {
        at += Int(b % 61) + 1
        if at < bytes.count { cuts.append(at) }
    }
    switch data[0] % 2 {
    case 0:
        let whole = requestEvents(bytes, cuts: [])
        let pieces = requestEvents(bytes, cuts: cuts)
        if whole != pieces { fatalError("request events differ when split: \(whole) vs \(pieces)") }
    default:
        guard let first = bytes.first else { return 0 }
        let method: HTTPMethod = first % 3 == 0 ? .HEAD : first % 3 == 1 ? .GET : .POST
        let rest = Array(bytes.dropFirst())
        let whole = responseEvents(rest, cuts: [], method: method)
        let pieces = responseEvents(rest, cuts: cuts.map { $0 - 1 }.filter { $0 > 0 }, method: method)
        if whole != pieces { fatalError("response events differ when split: \(whole) vs \(pieces)") }
    }
    return 0
}

/// Checks what a reader promises about a field block.
func checkFields(_ block: HeaderBlock) -> String {
    var out = ""
    for f in block.fields {
        block.withName(f) { name in
            precondition(!name.isEmpty && name.allSatisfy(HTTPToken.isTokenByte), "name not a token")
        }
        block.withValue(f) { value in
            precondition(!value.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }), "CR, LF or NUL in a value")
            precondition(value.first != 0x20 && value.first != 0x09 && value.last != 0x20 && value.last != 0x09, "untrimmed value")
        }
        out += block.name(f) + ":" + block.value(f) + "|"
    }
    return out
}

func requestEvents(_ bytes: [UInt8], cuts: [Int]) -> [String] {
    var reader = HTTP1RequestReader(limits: HTTP1Limits(maxURIBytes: 256, maxHeaderBytes: 1024))
    var buffer = ByteBuffer()
    var events: [String] = []
    var body = 0
    var start = 0
    for end in cuts + [bytes.count] where end > start {
        buffer.writeBytes(bytes[start..<end])
        start = end
        do {
            while let e = try reader.read(&buffer) {
                switch e {
                case .head(let h, let f):
                    events.append("head \(h.method) \(h.target) \(h.version) \(f) " + checkFields(h.fields))
                case .body(let b):
                    precondition(b.readableBytes > 0, "empty body part")
                    body += b.readableBytes
                case .end(let t):
                    events.append("end \(body) " + (t.map(checkFields) ?? "-"))
                    body = 0
                }
                precondition(events.count < 10_000, "runaway reader")
            }
        } catch {
            events.append("error \(error)")
            return events
        }
    }
    events.append("open \(body) idle=\(reader.isIdle)")
    return events
}

func responseEvents(_ bytes: [UInt8], cuts: [Int], method: HTTPMethod) -> [String] {
    var reader = HTTP1ResponseReader(maxHeaderBytes: 1024)
    var buffer = ByteBuffer()
    var events: [String] = []
    var body = 0
    var start = 0
    for end in cuts + [bytes.count] where end > start {
        buffer.writeBytes(bytes[start..<end])
        start = end
        do {
            while let e = try reader.read(&buffer, requestMethod: method) {
                switch e {
                case .head(let h, let f):
                    precondition((100...599).contains(h.status), "status out of range")
                    events.append("head \(h.status) \(h.version) \(f) " + checkFields(h.fields))
                    if h.status == 101 { return events }
                case .body(let b):
                    precondition(b.readableBytes > 0, "empty body part")
                    body += b.readableBytes
                case .end(let t):
                    events.append("end \(body) " + (t.map(checkFields) ?? "-"))
                    body = 0
                }
                precondition(events.count < 10_000, "runaway reader")
            }
        } catch {
            events.append("error \(error)")
            return events
        }
    }
    do {
        if case .end? = try reader.connectionClosed() { events.append("end at close \(body)") }
    } catch {
        events.append("error at close \(error)")
    }
    return events
}
