// Built by scripts/fuzz-core.sh together with Sources/SluiceCore (not part of the package).
// libFuzzer entry: the first byte picks the target; the rest is the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)
    switch data[0] % 4 {
    case 0:
        if let v = try? JSONValue.parse(Array(bytes)) { _ = try? JSONValue.parse(v.serializedBytes()) }
    case 1:
        guard let doc = try? JSONValue.parse(Array(bytes)) else { return 0 }
        _ = DeclarativeConfig.decode(doc)
        for kind in ResourceKind.allCases {
            var s = ConfigState()
            try? s.set(kind, id: "x", value: doc)
        }
    case 2:
        _ = RequestPath.normalize(String(decoding: bytes, as: UTF8.self))
    default:
        let text = String(decoding: bytes, as: UTF8.self)
        let parts = text.split(separator: "\u{1}", maxSplits: 1)
        guard parts.count == 2, let re = try? LinearRegex(String(parts[0])) else { return 0 }
        _ = re.firstMatch(in: String(parts[1]))
        _ = re.matches(String(parts[1]))
    }
    return 0
}
