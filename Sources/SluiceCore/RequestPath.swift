/// Normalizes a request target before routing, so the path the router matches is the path
/// the upstream receives and no encoding trick can reach a route it should not.
///
/// - Percent-encoded unreserved characters (`%41`, `%2E`, `%7E`) are decoded; other escapes
///   are kept, with upper-case hex. `%2F` stays encoded and is not a separator.
/// - Repeated slashes are merged (as NGINX's `merge_slashes` does).
/// - `.` and `..` segments are resolved; a path that climbs above `/` is refused.
/// - The absolute form (`http://host/path`) yields its host and path.
public struct RequestPath: Sendable, Hashable {
    public var path: String
    /// The query without `?`, or nil when the target has none.
    public var query: String?
    /// The authority of an absolute-form target, which overrides the Host header.
    public var authority: String?

    public init(path: String, query: String?, authority: String?) {
        self.path = path
        self.query = query
        self.authority = authority
    }

    public enum Failure: Error, Sendable, Hashable {
        case notOriginForm
        case badPercentEncoding
        case aboveRoot
    }

    public static func normalize(_ target: String) -> Result<RequestPath, Failure> {
        // Delimiters are found on the bytes, never on Characters: a combining mark after
        // `/`, `?` or `#` would otherwise merge with it into one Character and hide it.
        let slashByte = UInt8(ascii: "/"), queryByte = UInt8(ascii: "?"), hashByte = UInt8(ascii: "#")
        var rest = Substring(target)
        var authority: String? = nil
        if rest.utf8.first != slashByte {
            let lower = String(decoding: rest.utf8.prefix(8), as: UTF8.self).lowercased()
            let schemeLength: Int
            if lower.hasPrefix("http://") {
                schemeLength = 7
            } else if lower.hasPrefix("https://") {
                schemeLength = 8
            } else {
                return .failure(.notOriginForm)
            }
            rest = Substring(rest.utf8.dropFirst(schemeLength))
            let slash = rest.utf8.firstIndex(where: { $0 == slashByte || $0 == queryByte }) ?? rest.endIndex
            authority = String(rest[..<slash])
            rest = rest[slash...]
            if rest.utf8.first != slashByte { rest = "/" + rest }
        }
        if let hash = rest.utf8.firstIndex(of: hashByte) { rest = rest[..<hash] }
        var query: String? = nil
        var rawPath = rest
        if let q = rest.utf8.firstIndex(of: queryByte) {
            query = String(rest[rest.utf8.index(after: q)...])
            rawPath = rest[..<q]
        }
        if !needsWork(rawPath.utf8) {
            return .success(RequestPath(path: String(rawPath), query: query, authority: authority))
        }
        switch normalizePath(Array(rawPath.utf8)) {
        case .success(let bytes):
            return .success(RequestPath(path: String(decoding: bytes, as: UTF8.self), query: query, authority: authority))
        case .failure(let f):
            return .failure(f)
        }
    }

    /// True when the path has a `%`, `//`, or a segment starting with `.`.
    static func needsWork(_ bytes: Substring.UTF8View) -> Bool {
        var previous: UInt8 = 0
        for b in bytes {
            if b == UInt8(ascii: "%") { return true }
            if previous == UInt8(ascii: "/") && (b == UInt8(ascii: "/") || b == UInt8(ascii: ".")) { return true }
            previous = b
        }
        return false
    }

    static func isUnreserved(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
            || c == UInt8(ascii: "_") || c == UInt8(ascii: "~")
    }

    static func normalizePath(_ input: [UInt8]) -> Result<[UInt8], Failure> {
        // 1. Decode unreserved escapes, canonicalize the rest.
        var decoded: [UInt8] = []
        decoded.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let c = input[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < input.count, let hi = PercentDecoding.hexValue(input[i + 1]), let lo = PercentDecoding.hexValue(input[i + 2]) else {
                    return .failure(.badPercentEncoding)
                }
                let v = hi << 4 | lo
                if isUnreserved(v) {
                    decoded.append(v)
                } else {
                    let hex = Array("0123456789ABCDEF".utf8)
                    decoded.append(contentsOf: [UInt8(ascii: "%"), hex[Int(hi)], hex[Int(lo)]])
                }
                i += 3
            } else {
                decoded.append(c)
                i += 1
            }
        }
        // 2. Split into segments, merging empty ones, resolving dots.
        var segments: [ArraySlice<UInt8>] = []
        var start = 1  // skip the leading '/'
        let endsWithSlash = decoded.last == UInt8(ascii: "/")
        var trailingSlash = endsWithSlash
        while start <= decoded.count {
            var end = start
            while end < decoded.count && decoded[end] != UInt8(ascii: "/") { end += 1 }
            let seg = decoded[start..<end]
            if seg.isEmpty {
                // merged slash
            } else if seg.count == 1 && seg.first == UInt8(ascii: ".") {
                if end == decoded.count { trailingSlash = true }
            } else if seg.count == 2 && seg.first == UInt8(ascii: ".") && seg.last == UInt8(ascii: ".") {
                if segments.isEmpty { return .failure(.aboveRoot) }
                segments.removeLast()
                if end == decoded.count { trailingSlash = true }
            } else {
                segments.append(seg)
            }
            start = end + 1
        }
        var out: [UInt8] = [UInt8(ascii: "/")]
        for (n, seg) in segments.enumerated() {
            if n > 0 { out.append(UInt8(ascii: "/")) }
            out.append(contentsOf: seg)
        }
        if trailingSlash && !segments.isEmpty { out.append(UInt8(ascii: "/")) }
        return .success(out)
    }
}
