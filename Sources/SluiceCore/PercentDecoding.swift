/// Decoding of `%XX` escapes in query strings and form-style values.
public enum PercentDecoding {
    @inlinable
    public static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The `name=value` pairs of a query string, decoded, in order (a name without `=` has
    /// the value "").
    public static func queryPairs(_ query: Substring) -> [(name: String, value: String)] {
        query.split(separator: "&").map { pair in
            guard let eq = pair.firstIndex(of: "=") else { return (decode(pair), "") }
            return (decode(pair[..<eq]), decode(pair[pair.index(after: eq)...]))
        }
    }

    /// The query as a dictionary; a repeated name keeps its last value.
    public static func queryParameters(_ query: Substring) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in queryPairs(query) { out[k] = v }
        return out
    }

    /// Decodes `%XX` escapes (a malformed escape is kept as written) and, for query strings,
    /// `+` as a space.
    public static func decode(_ s: Substring, plusAsSpace: Bool = true) -> String {
        if !s.utf8.contains(UInt8(ascii: "%")) && !(plusAsSpace && s.utf8.contains(UInt8(ascii: "+"))) { return String(s) }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "+") && plusAsSpace {
                out.append(UInt8(ascii: " "))
            } else if c == UInt8(ascii: "%"), i + 2 < bytes.count,
                let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
                continue
            } else {
                out.append(c)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }
}
