/// An IPv4 or IPv6 address as 128 bits (IPv4 is kept apart, not mapped, so that
/// `10.0.0.0/8` never matches an IPv6 client by accident).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public var isIPv4: Bool

    public init(ipv4 value: UInt32) {
        high = 0
        low = UInt64(value)
        isIPv4 = true
    }

    public init(ipv6High: UInt64, low: UInt64) {
        high = ipv6High
        self.low = low
        isIPv4 = false
    }

    public var bitWidth: Int { isIPv4 ? 32 : 128 }

    /// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) stands for, or the
    /// address itself. A dual-stack listener reports IPv4 clients in the mapped form; rules
    /// are compared with the unmapped one, so `10.0.0.0/8` matches them.
    public var unmapped: IPAddress {
        guard !isIPv4, high == 0, low >> 32 == 0xFFFF else { return self }
        return IPAddress(ipv4: UInt32(truncatingIfNeeded: low))
    }

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text (`::1`, `fe80::1`, `::ffff:1.2.3.4`).
    /// Brackets around IPv6 (`[::1]`) and a zone (`%eth0`) are accepted and dropped.
    public init?(_ text: some StringProtocol) {
        var s = Substring(text)
        if s.hasPrefix("["), s.hasSuffix("]") { s = s.dropFirst().dropLast() }
        if let pct = s.firstIndex(of: "%") { s = s[..<pct] }
        if let v4 = IPAddress.parseIPv4(s) {
            self.init(ipv4: v4)
        } else if let (h, l) = IPAddress.parseIPv6(s) {
            self.init(ipv6High: h, low: l)
        } else {
            return nil
        }
    }

    static func parseIPv4(_ s: Substring) -> UInt32? {
        var result: UInt32 = 0
        var octets = 0
        var current: UInt32 = 0
        var digits = 0
        for c in s.utf8 {
            if c == UInt8(ascii: ".") {
                guard digits > 0, octets < 3 else { return nil }
                result = result << 8 | current
                octets += 1
                current = 0
                digits = 0
            } else if c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") {
                // No leading zeros (they read as octal in some parsers: refuse the ambiguity).
                if digits == 1 && current == 0 { return nil }
                current = current * 10 + UInt32(c - UInt8(ascii: "0"))
                digits += 1
                guard digits <= 3, current <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, octets == 3 else { return nil }
        return result << 8 | current
    }

    static func parseIPv6(_ s: Substring) -> (UInt64, UInt64)? {
        guard s.contains(":") else { return nil }
        var groups: [UInt16] = []
        var doubleColonAt: Int? = nil
        var rest = s
        if rest.hasPrefix("::") {
            doubleColonAt = 0
            rest = rest.dropFirst(2)
        } else if rest.hasPrefix(":") {
            return nil
        }
        while !rest.isEmpty {
            let end = rest.firstIndex(of: ":") ?? rest.endIndex
            let part = rest[..<end]
            if part.contains(".") {
                // Embedded IPv4 must be the last part.
                guard end == rest.endIndex, let v4 = parseIPv4(part) else { return nil }
                groups.append(UInt16(v4 >> 16))
                groups.append(UInt16(v4 & 0xFFFF))
                rest = rest[end...]
                break
            }
            guard (1...4).contains(part.count), let g = UInt16(part, radix: 16) else { return nil }
            groups.append(g)
            rest = rest[end...]
            if rest.hasPrefix("::") {
                guard doubleColonAt == nil else { return nil }
                doubleColonAt = groups.count
                rest = rest.dropFirst(2)
            } else if rest.hasPrefix(":") {
                rest = rest.dropFirst()
                guard !rest.isEmpty else { return nil }
            }
        }
        if let at = doubleColonAt {
            guard groups.count < 8 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: at)
        }
        guard groups.count == 8 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<4 { high = high << 16 | UInt64(groups[i]) }
        for i in 4..<8 { low = low << 16 | UInt64(groups[i]) }
        return (high, low)
    }

    public var description: String {
        if isIPv4 {
            let v = UInt32(truncatingIfNeeded: low)
            return "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF)"
        }
        var groups: [UInt16] = []
        for i in (0..<4).reversed() { groups.append(UInt16(truncatingIfNeeded: high >> (UInt64(i) * 16))) }
        for i in (0..<4).reversed() { groups.append(UInt16(truncatingIfNeeded: low >> (UInt64(i) * 16))) }
        // Longest run of zero groups (length >= 2) becomes "::".
        var bestStart = -1, bestLen = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLen && j - i >= 2 { bestStart = i; bestLen = j - i }
                i = j
            } else {
                i += 1
            }
        }
        func hex(_ r: ArraySlice<UInt16>) -> String { r.map { String($0, radix: 16) }.joined(separator: ":") }
        if bestStart < 0 { return hex(groups[...]) }
        return hex(groups[0..<bestStart]) + "::" + hex(groups[(bestStart + bestLen)...])
    }
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int
    let maskHigh: UInt64
    let maskLow: UInt64

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(parts[0]) else { return nil }
        let length: Int
        if parts.count == 2 {
            guard let l = Int(parts[1]), (0...address.bitWidth).contains(l) else { return nil }
            length = l
        } else {
            length = address.bitWidth
        }
        self.init(address: address, prefixLength: length)
    }

    public init(address given: IPAddress, prefixLength requested: Int) {
        // `::ffff:10.0.0.0/104` is the IPv4 block 10.0.0.0/8: clients are compared unmapped.
        var address = given
        var requested = requested
        if !given.isIPv4, given.unmapped.isIPv4, requested >= 96 {
            address = given.unmapped
            requested -= 96
        }
        let prefixLength = max(0, min(requested, address.bitWidth))
        self.prefixLength = prefixLength
        if address.isIPv4 {
            maskHigh = 0
            maskLow = prefixLength == 0 ? 0 : (UInt64(UInt32.max) << UInt64(32 - prefixLength)) & UInt64(UInt32.max)
        } else {
            if prefixLength >= 64 {
                maskHigh = UInt64.max
                maskLow = prefixLength == 64 ? 0 : UInt64.max << UInt64(128 - prefixLength)
            } else {
                maskHigh = prefixLength == 0 ? 0 : UInt64.max << UInt64(64 - prefixLength)
                maskLow = 0
            }
        }
        var n = address
        n.high &= maskHigh
        n.low &= maskLow
        network = n
    }

    public func contains(_ address: IPAddress) -> Bool {
        address.isIPv4 == network.isIPv4 && (address.high & maskHigh) == network.high && (address.low & maskLow) == network.low
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
