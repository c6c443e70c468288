// LinearRegex: a linear-time regular-expression engine in pure Swift.
//
// Patterns use the PCRE/Perl syntax found in NGINX and APISIX configurations
// (a subset: no backreferences, lookaround, atomic groups, recursion, ...).
// A pattern is parsed into a syntax tree and compiled to a program for a Pike VM:
// a Thompson-NFA simulation that keeps its threads in priority order with their
// capture slots, so `firstMatch` gives the leftmost-first match PCRE would give,
// in O(program size × input length) time, whatever the pattern.
//
// Three matchers share the program:
// - a DFA, built eagerly at init when the pattern allows it (no `\b`, `\B` or
//   (?m) anchors, bounded size): `matches`, and a quick "no match" for `firstMatch`;
// - a bounded backtracker that never revisits an (instruction, position) pair, for
//   captures on inputs where its visited bitmap is small (also linear, and faster
//   than the VM on short inputs);
// - the Pike VM for the rest.
//
// Matching works on the UTF-8 bytes of the input, one Unicode scalar per step:
// `.` and negated classes consume a whole scalar. `\d \w \s \b` and POSIX
// classes are ASCII, as in PCRE without UCP. Case-insensitive matching uses
// simple Unicode case folding (k, K and U+212A KELVIN SIGN are one letter).

// MARK: - Public API

/// A pattern the engine cannot compile. `offset` counts Unicode scalars from
/// the start of the pattern (equal to the byte offset for ASCII patterns).
public struct RegexSyntaxError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let offset: Int
    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }
    public var description: String { "invalid regular expression at offset \(offset): \(message)" }
}

/// A compiled regular expression that matches in time linear in the input.
/// Immutable after init; one instance can be used from many threads at once.
public final class LinearRegex: Sendable {
    public let pattern: String
    /// Number of capture groups, not counting group 0.
    public let captureCount: Int
    /// Named groups (`(?<name>...)`, `(?P<name>...)`, `(?'name'...)`) and their numbers.
    public let groupNames: [String: Int]
    let program: Program
    let dfa: DFA?

    public init(_ pattern: String, caseInsensitive: Bool = false) throws(RegexSyntaxError) {
        var parser = Parser(pattern, caseInsensitive: caseInsensitive)
        let tree = try parser.parse()
        var compiler = Compiler()
        let prog = try compiler.compile(tree, groupCount: parser.groupCount)
        self.pattern = pattern
        self.captureCount = parser.groupCount
        self.groupNames = parser.names
        self.program = prog
        self.dfa = DFA.build(prog)
    }

    /// True if the pattern matches anywhere in `s` (unanchored search, like PCRE find).
    public func matches(_ s: String) -> Bool {
        var s = s
        return s.withUTF8 { matches(utf8: $0) }
    }

    /// True if the pattern matches anywhere in `s`.
    public func matches(_ s: Substring) -> Bool {
        var s = s
        return s.withUTF8 { matches(utf8: $0) }
    }

    /// True if the pattern matches anywhere in the UTF-8 bytes (invalid sequences
    /// are read as U+FFFD, one byte at a time).
    public func matches(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        LinearRegex.withInput(bytes) { p, n in
            if let dfa { return dfa.matches(p, n) }
            if program.canBacktrack(n) { return program.backtrack(p, n, captures: false) != nil }
            return program.run(p, n, captures: false) != nil
        }
    }

    /// The leftmost-first match (PCRE semantics). Element 0 is the whole match,
    /// then groups 1...captureCount; nil for a group that did not participate.
    public func firstMatch(in s: String) -> [Range<String.Index>?]? {
        var copy = s
        guard let slots = copy.withUTF8({ matchSlots($0) }) else { return nil }
        let u = s.utf8
        return LinearRegex.ranges(slots) { u.index(u.startIndex, offsetBy: $0) }
    }

    /// The same on a substring: `^`, `$` and `\b` see the substring's bounds as
    /// the subject's bounds; the ranges are indices into the base string.
    public func firstMatch(in s: Substring) -> [Range<String.Index>?]? {
        var copy = s
        guard let slots = copy.withUTF8({ matchSlots($0) }) else { return nil }
        let u = s.utf8
        return LinearRegex.ranges(slots) { u.index(u.startIndex, offsetBy: $0) }
    }

    /// The leftmost-first match as UTF-8 byte offsets into `bytes`.
    public func firstMatch(utf8 bytes: UnsafeBufferPointer<UInt8>) -> [Range<Int>?]? {
        guard let slots = matchSlots(bytes) else { return nil }
        return LinearRegex.ranges(slots) { $0 }
    }

    func matchSlots(_ bytes: UnsafeBufferPointer<UInt8>) -> [Int]? {
        LinearRegex.withInput(bytes) { p, n in
            if let dfa, !dfa.matches(p, n) { return nil }
            if program.canBacktrack(n) { return program.backtrack(p, n, captures: true) }
            return program.run(p, n, captures: true)
        }
    }

    static func ranges<I: Comparable>(_ slots: [Int], _ index: (Int) -> I) -> [Range<I>?] {
        var out: [Range<I>?] = []
        out.reserveCapacity(slots.count / 2)
        var k = 0
        while k + 1 < slots.count {
            let a = slots[k], b = slots[k + 1]
            if a >= 0 && b >= a { out.append(index(a)..<index(b)) } else { out.append(nil) }
            k += 2
        }
        return out
    }
}

extension LinearRegex {
    @inline(__always)
    static func withInput<R>(_ buf: UnsafeBufferPointer<UInt8>, _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
        if let base = buf.baseAddress, buf.count > 0 { return body(base, buf.count) }
        var zero: UInt8 = 0
        return withUnsafePointer(to: &zero) { body($0, 0) }
    }


    // MARK: - Limits

    enum Limits {
        static let maxRepeat = 1000
        static let maxInstructions = 20_000
        static let maxNesting = 200
        static let maxThreadSlots = 500_000
    }

    // MARK: - Scalar sets

    /// A set of Unicode scalar values as inclusive ranges.
    struct ScalarSet {
        var ranges: [(UInt32, UInt32)] = []

        init() {}
        init(_ lo: UInt32, _ hi: UInt32) { ranges = [(lo, hi)] }
        init(scalars: [UInt32]) { ranges = scalars.map { ($0, $0) } }

        mutating func add(_ lo: UInt32, _ hi: UInt32) { ranges.append((lo, hi)) }
        mutating func add(_ c: UInt32) { ranges.append((c, c)) }
        mutating func add(_ other: ScalarSet) { ranges.append(contentsOf: other.ranges) }

        /// Sorted, non-overlapping, non-adjacent ranges.
        func normalized() -> [(UInt32, UInt32)] {
            let sorted = ranges.sorted { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }
            var out: [(UInt32, UInt32)] = []
            for r in sorted {
                if let last = out.last, r.0 <= last.1 &+ 1 {
                    if r.1 > last.1 { out[out.count - 1].1 = r.1 }
                } else {
                    out.append(r)
                }
            }
            return out
        }

        func inverted() -> ScalarSet {
            var out = ScalarSet()
            var next: UInt32 = 0
            for (lo, hi) in normalized() {
                if lo > next { out.add(next, lo - 1) }
                next = hi &+ 1
            }
            if next <= 0x10FFFF { out.add(next, 0x10FFFF) }
            return out
        }

        static let digit = ScalarSet(0x30, 0x39)
        static let word: ScalarSet = {
            var s = ScalarSet(0x30, 0x39); s.add(0x41, 0x5A); s.add(0x5F); s.add(0x61, 0x7A); return s
        }()
        static let space: ScalarSet = {
            var s = ScalarSet(0x09, 0x0D); s.add(0x20); return s
        }()
        static let hspace: ScalarSet = {
            var s = ScalarSet(scalars: [0x09, 0x20, 0xA0, 0x1680, 0x180E, 0x202F, 0x205F, 0x3000]); s.add(0x2000, 0x200A); return s
        }()
        static let vspace: ScalarSet = {
            var s = ScalarSet(0x0A, 0x0D); s.add(0x85); s.add(0x2028, 0x2029); return s
        }()
        static let notNewline: ScalarSet = { var s = ScalarSet(0, 9); s.add(11, 0x10FFFF); return s }()

        static func posix(_ name: String) -> ScalarSet? {
            var s = ScalarSet()
            switch name {
            case "alpha": s.add(0x41, 0x5A); s.add(0x61, 0x7A)
            case "digit": s = digit
            case "alnum": s.add(0x30, 0x39); s.add(0x41, 0x5A); s.add(0x61, 0x7A)
            case "upper": s.add(0x41, 0x5A)
            case "lower": s.add(0x61, 0x7A)
            case "space": s = space
            case "blank": s.add(0x09); s.add(0x20)
            case "punct": s.add(0x21, 0x2F); s.add(0x3A, 0x40); s.add(0x5B, 0x60); s.add(0x7B, 0x7E)
            case "xdigit": s.add(0x30, 0x39); s.add(0x41, 0x46); s.add(0x61, 0x66)
            case "word": s = word
            case "cntrl": s.add(0x00, 0x1F); s.add(0x7F)
            case "graph": s.add(0x21, 0x7E)
            case "print": s.add(0x20, 0x7E)
            case "ascii": s.add(0x00, 0x7F)
            default: return nil
            }
            return s
        }
    }

    // MARK: - Case folding

    /// Simple case folding: the scalars that are equal ignoring case form an orbit
    /// ({k, K, U+212A KELVIN SIGN}, {s, S, U+017F LONG S}, {σ, ς, Σ}, ...).
    enum CaseFold {
        /// The scalars equal to `c` ignoring case, including `c`.
        static func variants(_ c: UInt32) -> [UInt32] {
            if c < 0x80 {
                let lower = c | 0x20
                guard lower >= 0x61 && lower <= 0x7A else { return [c] }
                if lower == 0x6B { return [0x4B, 0x6B, 0x212A] }
                if lower == 0x73 { return [0x53, 0x73, 0x17F] }
                return [lower - 0x20, lower]
            }
            return table.orbits[c] ?? [c]
        }

        /// Adds the other cases of every scalar in `set`.
        static func close(_ set: ScalarSet) -> ScalarSet {
            var out = set
            for (lo, hi) in set.normalized() {
                if lo < 0x80 {
                    let top = min(hi, 0x7F)
                    for c in lo...top {
                        let v = variants(c)
                        if v.count > 1 { for x in v { out.add(x) } }
                    }
                }
                if hi >= 0x80 {
                    let start = max(lo, 0x80)
                    let keys = table.keys
                    // first key >= start
                    var a = 0, b = keys.count
                    while a < b { let m = (a + b) / 2; if keys[m] < start { a = m + 1 } else { b = m } }
                    while a < keys.count && keys[a] <= hi {
                        for x in table.orbits[keys[a]] ?? [] { out.add(x) }
                        a += 1
                    }
                }
            }
            return out
        }

        struct Table: Sendable {
            var keys: [UInt32]
            var orbits: [UInt32: [UInt32]]
        }

        /// Built once, on first use by a non-ASCII case-insensitive pattern.
        static let table: Table = {
            var parent: [UInt32: UInt32] = [:]
            func find(_ x: UInt32) -> UInt32 {
                var x = x
                while let p = parent[x], p != x { x = p }
                return x
            }
            func union(_ a: UInt32, _ b: UInt32) {
                if parent[a] == nil { parent[a] = a }
                if parent[b] == nil { parent[b] = b }
                let ra = find(a), rb = find(b)
                if ra != rb { parent[ra] = rb }
            }
            func single(_ s: String) -> UInt32? {
                var it = s.unicodeScalars.makeIterator()
                guard let first = it.next(), it.next() == nil else { return nil }
                return first.value
            }
            var v: UInt32 = 0
            while v <= 0x1FFFF {
                // Turkish dotted and dotless i have no simple case folding.
                if v != 0x130 && v != 0x131, let u = Unicode.Scalar(v), u.properties.changesWhenCaseMapped {
                    if let l = single(u.properties.lowercaseMapping), l != v, l != 0x130, l != 0x131 { union(v, l) }
                    if let up = single(u.properties.uppercaseMapping), up != v, up != 0x130, up != 0x131 { union(v, up) }
                }
                v += 1
            }
            var groups: [UInt32: [UInt32]] = [:]
            for x in parent.keys { groups[find(x), default: []].append(x) }
            var orbits: [UInt32: [UInt32]] = [:]
            for (_, members) in groups where members.count > 1 {
                let sorted = members.sorted()
                for m in sorted { orbits[m] = sorted }
            }
            return Table(keys: orbits.keys.sorted(), orbits: orbits)
        }()
    }

    // MARK: - Syntax tree

    enum AssertKind: UInt8, Sendable {
        case start          // \A, ^ without (?m)
        case end            // \z
        case endOrFinalNL   // $ without (?m), \Z
        case lineStart      // ^ with (?m)
        case lineEnd        // $ with (?m)
        case wordBoundary   // \b
        case notWordBoundary // \B
    }

    indirect enum Node {
        case empty
        case literal(UInt32)
        case set(ScalarSet)
        case dot(Bool)                       // true: also matches \n
        case assertion(AssertKind)
        case capture(Int, Node)
        case concat([Node])
        case alternation([Node])
        case repetition(Node, min: Int, max: Int, greedy: Bool)   // max -1: unbounded

        var nullable: Bool {
            switch self {
            case .empty, .assertion: return true
            case .literal, .set, .dot: return false
            case .capture(_, let n): return n.nullable
            case .concat(let ns): return ns.allSatisfy { $0.nullable }
            case .alternation(let ns): return ns.contains { $0.nullable }
            case .repetition(let n, let min, _, _): return min == 0 || n.nullable
            }
        }

        /// An unbounded loop over a body that can match empty is compiled with a fresh
        /// copy of the body (see Compiler.emitRepetition) to follow PCRE's rule for empty iterations.
        var needsFreshCopy: Bool {
            if case .repetition(let n, _, let max, _) = self { return max < 0 && n.nullable }
            return false
        }

        /// Instructions the node compiles to (saturating).
        var size: Int {
            switch self {
            case .empty: return 0
            case .literal, .set, .dot, .assertion: return 1
            case .capture(_, let n): return sat(n.size, 2)
            case .concat(let ns): return ns.reduce(0) { sat($0, $1.size) }
            case .alternation(let ns): return ns.reduce(2 * (ns.count - 1)) { sat($0, $1.size) }
            case .repetition(let n, let min, let max, _):
                let s = n.size
                if max == 0 { return 0 }
                if max < 0 {
                    if needsFreshCopy { return sat(satMul(Swift.max(min - 1, 0), s), sat(satMul(2, s), 4)) }
                    return min == 0 ? sat(s, 2) : sat(satMul(min, s), 1)
                }
                return sat(satMul(max, s), max - min)
            }
        }
    }

    @inline(__always) static func sat(_ a: Int, _ b: Int) -> Int {
        let (r, o) = a.addingReportingOverflow(b); return o ? Int.max : r
    }
    @inline(__always) static func satMul(_ a: Int, _ b: Int) -> Int {
        let (r, o) = a.multipliedReportingOverflow(by: b); return o ? Int.max : r
    }

    // MARK: - Parser

    struct Flags {
        var caseless = false   // i
        var multiline = false  // m
        var dotAll = false     // s
        var extended = false   // x
    }

    struct Parser {
        let src: [UInt32]
        var pos = 0
        var flags = Flags()
        var groupCount = 0
        var names: [String: Int] = [:]
        var depth = 0

        init(_ pattern: String, caseInsensitive: Bool) {
            src = pattern.unicodeScalars.map { $0.value }
            flags.caseless = caseInsensitive
        }

        func error(_ message: String, _ at: Int) -> RegexSyntaxError {
            RegexSyntaxError(message: message, offset: at)
        }

        func peek(_ k: Int = 0) -> UInt32? {
            let i = pos + k
            return i < src.count ? src[i] : nil
        }

        mutating func parse() throws(RegexSyntaxError) -> Node {
            let node = try parseAlternation()
            if pos < src.count { throw error("unmatched closing parenthesis", pos) }
            return node
        }

        mutating func parseAlternation() throws(RegexSyntaxError) -> Node {
            var branches = [try parseSequence()]
            while peek() == 0x7C /* | */ {
                pos += 1
                branches.append(try parseSequence())
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func skipExtended() {
            guard flags.extended else { return }
            while pos < src.count {
                let c = src[pos]
                if c == 0x20 || (c >= 0x09 && c <= 0x0D) {
                    pos += 1
                } else if c == 0x23 /* # */ {
                    while pos < src.count && src[pos] != 0x0A { pos += 1 }
                } else {
                    break
                }
            }
        }

        mutating func parseSequence() throws(RegexSyntaxError) -> Node {
            var items: [Node] = []
            while true {
                skipExtended()
                guard let c = peek(), c != 0x7C, c != 0x29 /* ) */ else { break }
                var atom: Node
                let grouped = c == 0x28
                if c == 0x5C && peek(1) == 0x51 /* \Q */ {
                    pos += 2
                    var lits: [UInt32] = []
                    while pos < src.count {
                        if src[pos] == 0x5C && peek(1) == 0x45 { pos += 2; break }
                        lits.append(src[pos]); pos += 1
                    }
                    guard let last = lits.popLast() else { continue }
                    for l in lits { items.append(literal(l)) }
                    atom = literal(last)
                } else {
                    guard let a = try parseAtom() else { continue }
                    atom = a
                }
                skipExtended()
                let qpos = pos
                if let q = try parseQuantifier() {
                    if case .assertion = atom, !grouped {
                        throw error("quantifier does not follow a repeatable item", qpos)
                    }
                    atom = .repetition(atom, min: q.min, max: q.max, greedy: q.greedy)
                    skipExtended()
                    let save = pos
                    var another = false
                    if let c2 = peek() {
                        if c2 == 0x2A || c2 == 0x2B || c2 == 0x3F { another = true }
                        else if c2 == 0x7B { do { another = try parseBraces() != nil } catch { another = true } }
                    }
                    if another {
                        throw error("nested quantifier: wrap the repeated item in a group (?:...)", save)
                    }
                    pos = save
                }
                items.append(atom)
            }
            if items.isEmpty { return .empty }
            return items.count == 1 ? items[0] : .concat(items)
        }

        /// `{n}`, `{n,}`, `{n,m}`, `{,m}`; nil (position unchanged) if the brace is a literal.
        mutating func parseBraces() throws(RegexSyntaxError) -> (min: Int, max: Int)? {
            let start = pos
            guard peek() == 0x7B else { return nil }
            var i = pos + 1
            func number(_ i: inout Int) -> Int? {
                var v = 0, any = false
                while i < src.count, src[i] >= 0x30, src[i] <= 0x39 {
                    v = min(v * 10 + Int(src[i] - 0x30), 1_000_000)
                    any = true
                    i += 1
                }
                return any ? v : nil
            }
            let lo = number(&i)
            var hi: Int?
            var hasComma = false
            if i < src.count && src[i] == 0x2C { hasComma = true; i += 1; hi = number(&i) }
            guard i < src.count, src[i] == 0x7D else { return nil }
            if lo == nil && hi == nil { return nil }
            pos = i + 1
            let mn = lo ?? 0
            let mx = hasComma ? (hi ?? -1) : mn
            if mn > Limits.maxRepeat || mx > Limits.maxRepeat {
                throw error("repetition count too large (maximum is \(Limits.maxRepeat))", start)
            }
            if mx >= 0 && mx < mn { throw error("numbers out of order in {} quantifier", start) }
            return (mn, mx)
        }

        mutating func parseQuantifier() throws(RegexSyntaxError) -> (min: Int, max: Int, greedy: Bool)? {
            guard let c = peek() else { return nil }
            let start = pos
            var mn = 0, mx = -1
            switch c {
            case 0x2A: pos += 1                          // *
            case 0x2B: pos += 1; mn = 1                  // +
            case 0x3F: pos += 1; mx = 1                  // ?
            case 0x7B:
                guard let b = try parseBraces() else { return nil }
                mn = b.min; mx = b.max
            default: return nil
            }
            var greedy = true
            if peek() == 0x3F { pos += 1; greedy = false }
            else if peek() == 0x2B { throw error("possessive quantifiers are not supported", start) }
            return (mn, mx, greedy)
        }

        func literal(_ c: UInt32) -> Node {
            if flags.caseless {
                let v = CaseFold.variants(c)
                if v.count > 1 { return .set(ScalarSet(scalars: v)) }
            }
            return .literal(c)
        }

        mutating func parseAtom() throws(RegexSyntaxError) -> Node? {
            let start = pos
            let c = src[pos]
            switch c {
            case 0x28: return try parseGroup()
            case 0x5B: return try parseClass()
            case 0x2E: pos += 1; return .dot(flags.dotAll)
            case 0x5E: pos += 1; return .assertion(flags.multiline ? .lineStart : .start)
            case 0x24: pos += 1; return .assertion(flags.multiline ? .lineEnd : .endOrFinalNL)
            case 0x5C: return try parseEscape()
            case 0x2A, 0x2B, 0x3F:
                throw error("quantifier does not follow a repeatable item", start)
            case 0x7B:
                let isQuantifier: Bool
                do { isQuantifier = try parseBraces() != nil } catch { isQuantifier = true }
                if isQuantifier { throw error("quantifier does not follow a repeatable item", start) }
                pos += 1
                return literal(c)
            default:
                pos += 1
                return literal(c)
            }
        }

        mutating func parseName(terminator: UInt32) throws(RegexSyntaxError) -> String {
            let start = pos
            var name = ""
            while let c = peek(), c != terminator {
                let ok = (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F || (c >= 0x30 && c <= 0x39 && !name.isEmpty)
                guard ok, let u = Unicode.Scalar(c) else { throw error("invalid character in group name", pos) }
                name.unicodeScalars.append(u)
                pos += 1
            }
            guard peek() == terminator else { throw error("missing terminator for group name", start) }
            guard !name.isEmpty else { throw error("group name must not be empty", start) }
            guard name.unicodeScalars.count <= 32 else { throw error("group name is too long", start) }
            pos += 1
            return name
        }

        mutating func parseGroup() throws(RegexSyntaxError) -> Node? {
            let start = pos
            pos += 1
            var capture = true
            var name: String?
            var scoped: Flags?
            if peek() == 0x2A /* ( * */ {
                throw error("(*VERB) control verbs are not supported", start)
            }
            if peek() == 0x3F /* ? */ {
                pos += 1
                guard let c = peek() else { throw error("missing closing parenthesis", start) }
                switch c {
                case 0x3A: pos += 1; capture = false                                   // (?:
                case 0x23:                                                               // (?# comment )
                    while let d = peek(), d != 0x29 { pos += 1 }
                    guard peek() == 0x29 else { throw error("missing ) after (?# comment", start) }
                    pos += 1
                    return nil
                case 0x3D: throw error("lookahead assertions (?=...) are not supported", start)
                case 0x21: throw error("negative lookahead assertions (?!...) are not supported", start)
                case 0x3E: throw error("atomic groups (?>...) are not supported", start)
                case 0x7C: throw error("branch reset groups (?|...) are not supported", start)
                case 0x28: throw error("conditional groups (?(...)...) are not supported", start)
                case 0x52, 0x26, 0x2B, 0x30...0x39:
                    throw error("recursion and subroutine calls are not supported", start)
                case 0x43: throw error("callouts (?C...) are not supported", start)
                case 0x3C:                                                               // (?<
                    if peek(1) == 0x3D { throw error("lookbehind assertions (?<=...) are not supported", start) }
                    if peek(1) == 0x21 { throw error("negative lookbehind assertions (?<!...) are not supported", start) }
                    pos += 1
                    name = try parseName(terminator: 0x3E)
                case 0x27:                                                               // (?'name'
                    pos += 1
                    name = try parseName(terminator: 0x27)
                case 0x50:                                                               // (?P
                    if peek(1) == 0x3C { pos += 2; name = try parseName(terminator: 0x3E) }
                    else if peek(1) == 0x3D { throw error("backreferences (?P=name) are not supported", start) }
                    else if peek(1) == 0x3E { throw error("recursion and subroutine calls (?P>name) are not supported", start) }
                    else { throw error("unknown group syntax (?P", start) }
                default:
                    // inline flags: (?imsx-imsx) or (?imsx-imsx: ... )
                    if c == 0x2D, let d = peek(1), d >= 0x30 && d <= 0x39 {
                        throw error("recursion and subroutine calls are not supported", start)
                    }
                    var f = flags
                    var on = true
                    while true {
                        guard let d = peek() else { throw error("missing closing parenthesis", start) }
                        if d == 0x29 { pos += 1; flags = f; return nil }
                        if d == 0x3A { pos += 1; break }
                        switch d {
                        case 0x2D:
                            if !on { throw error("invalid inline flags", pos) }
                            on = false
                        case 0x69: f.caseless = on
                        case 0x6D: f.multiline = on
                        case 0x73: f.dotAll = on
                        case 0x78: f.extended = on
                        default:
                            if d < 0x80, d > 0x20, let u = Unicode.Scalar(d),
                               (d >= 0x41 && d <= 0x5A) || (d >= 0x61 && d <= 0x7A) || d == 0x5E {
                                throw error("unsupported inline flag '\(Character(u))'", pos)
                            }
                            throw error("unknown group syntax", start)
                        }
                        pos += 1
                    }
                    capture = false
                    scoped = f
                }
            }
            depth += 1
            if depth > Limits.maxNesting { throw error("parentheses are nested too deeply", start) }
            var index = 0
            if capture {
                groupCount += 1
                index = groupCount
                if let name {
                    if names[name] != nil { throw error("two named groups have the same name '\(name)'", start) }
                    names[name] = index
                }
            }
            let saved = flags
            if let scoped { flags = scoped }
            let body = try parseAlternation()
            flags = saved
            guard peek() == 0x29 else { throw error("missing closing parenthesis", start) }
            pos += 1
            depth -= 1
            return capture ? .capture(index, body) : body
        }

        enum Escaped {
            case scalar(UInt32)
            case set(ScalarSet)
        }

        func isHex(_ c: UInt32) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }
        func hexValue(_ c: UInt32) -> UInt32 { c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x61 + 10 }

        /// Escapes common to both contexts; `pos` is just after the backslash's letter.
        mutating func parseCodeEscape(_ c: UInt32, start: Int) throws(RegexSyntaxError) -> Escaped? {
            switch c {
            case 0x74: return .scalar(0x09)  // t
            case 0x6E: return .scalar(0x0A)  // n
            case 0x72: return .scalar(0x0D)  // r
            case 0x66: return .scalar(0x0C)  // f
            case 0x65: return .scalar(0x1B)  // e
            case 0x61: return .scalar(0x07)  // a
            case 0x64: return .set(.digit)
            case 0x44: return .set(ScalarSet.digit.inverted())
            case 0x77: return .set(.word)
            case 0x57: return .set(ScalarSet.word.inverted())
            case 0x73: return .set(.space)
            case 0x53: return .set(ScalarSet.space.inverted())
            case 0x68: return .set(.hspace)
            case 0x48: return .set(ScalarSet.hspace.inverted())
            case 0x76: return .set(.vspace)
            case 0x56: return .set(ScalarSet.vspace.inverted())
            case 0x78:                                            // \xHH, \x{H...}
                if peek() == 0x7B {
                    pos += 1
                    var v: UInt32 = 0
                    var digits = 0
                    while let d = peek(), isHex(d) {
                        v = digits < 8 ? v * 16 + hexValue(d) : 0x110000
                        digits += 1
                        pos += 1
                    }
                    guard peek() == 0x7D, digits > 0 else { throw error("invalid \\x{...} escape", start) }
                    pos += 1
                    return .scalar(try checkedCode(v, start))
                }
                var v: UInt32 = 0
                var digits = 0
                while digits < 2, let d = peek(), isHex(d) { v = v * 16 + hexValue(d); digits += 1; pos += 1 }
                guard digits > 0 else { throw error("\\x must be followed by hexadecimal digits", start) }
                return .scalar(v)
            case 0x6F:                                            // \o{...}
                guard peek() == 0x7B else { throw error("\\o must be followed by {", start) }
                pos += 1
                var v: UInt32 = 0
                var digits = 0
                while let d = peek(), d >= 0x30 && d <= 0x37 {
                    v = digits < 8 ? v * 8 + (d - 0x30) : 0x110000
                    digits += 1
                    pos += 1
                }
                guard peek() == 0x7D, digits > 0 else { throw error("invalid \\o{...} escape", start) }
                pos += 1
                return .scalar(try checkedCode(v, start))
            case 0x30:                                            // \0, \0o, \0oo
                var v: UInt32 = 0
                var digits = 0
                while digits < 2, let d = peek(), d >= 0x30 && d <= 0x37 { v = v * 8 + (d - 0x30); digits += 1; pos += 1 }
                return .scalar(v)
            case 0x63:                                            // \cX
                guard let d = peek(), d >= 0x20 && d < 0x7F else { throw error("\\c must be followed by a printable ASCII character", start) }
                pos += 1
                let up = (d >= 0x61 && d <= 0x7A) ? d - 0x20 : d
                return .scalar(up ^ 0x40)
            case 0x70, 0x50: throw error("Unicode property escapes \\p{...} and \\P{...} are not supported", start)
            case 0x58: throw error("\\X (extended grapheme cluster) is not supported", start)
            case 0x52: throw error("\\R (newline sequence) is not supported", start)
            case 0x43: throw error("\\C (single code unit) is not supported", start)
            case 0x4B: throw error("\\K (reset match start) is not supported", start)
            case 0x47: throw error("\\G (match start anchor) is not supported", start)
            case 0x6B: throw error("named backreferences (\\k<name>) are not supported", start)
            case 0x67: throw error("backreferences and subroutine calls (\\g) are not supported", start)
            case 0x75, 0x55, 0x6C, 0x4C: throw error("case-changing escapes (\\u \\U \\l \\L) are not supported", start)
            default: return nil
            }
        }

        func checkedCode(_ v: UInt32, _ start: Int) throws(RegexSyntaxError) -> UInt32 {
            if v > 0x10FFFF { throw error("character code point is too large", start) }
            if v >= 0xD800 && v <= 0xDFFF { throw error("character code point is a surrogate", start) }
            return v
        }

        func isAlnum(_ c: UInt32) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }

        mutating func parseEscape() throws(RegexSyntaxError) -> Node? {
            let start = pos
            pos += 1
            guard let c = peek() else { throw error("pattern ends with a trailing backslash", start) }
            pos += 1
            switch c {
            case 0x62: return .assertion(.wordBoundary)      // \b
            case 0x42: return .assertion(.notWordBoundary)   // \B
            case 0x41: return .assertion(.start)             // \A
            case 0x7A: return .assertion(.end)               // \z
            case 0x5A: return .assertion(.endOrFinalNL)      // \Z
            case 0x45: return nil                            // stray \E
            case 0x4E:                                       // \N
                if peek() == 0x7B && peek(1) == 0x55 { throw error("\\N{U+...} is not supported", start) }
                return .set(.notNewline)
            case 0x31...0x39: throw error("backreferences (\\\(Character(Unicode.Scalar(UInt8(c))))) are not supported", start)
            default: break
            }
            if let e = try parseCodeEscape(c, start: start) {
                switch e {
                case .scalar(let v): return literal(v)
                case .set(let s): return .set(s)
                }
            }
            if isAlnum(c) { throw error("unrecognized escape sequence \\\(Character(Unicode.Scalar(UInt8(c))))", start) }
            return literal(c)
        }

        // Character classes

        enum ClassItem {
            case scalar(UInt32)
            case set(ScalarSet)
        }

        mutating func parseClassItem(classStart: Int) throws(RegexSyntaxError) -> ClassItem {
            let start = pos
            let c = src[pos]
            if c == 0x5B, let d = peek(1), d == 0x3A || d == 0x2E || d == 0x3D {   // [: [. [=
                // find the matching ":]" (or ".]" "=]") before the class ends
                var j = pos + 2
                var negated = false
                if d == 0x3A && j < src.count && src[j] == 0x5E { negated = true; j += 1 }
                let nameStart = j
                while j < src.count, (src[j] >= 0x61 && src[j] <= 0x7A) || (src[j] >= 0x41 && src[j] <= 0x5A) { j += 1 }
                if j + 1 < src.count && src[j] == d && src[j + 1] == 0x5D {
                    if d != 0x3A { throw error("POSIX collating elements are not supported", start) }
                    let name = String(String.UnicodeScalarView(src[nameStart..<j].compactMap { Unicode.Scalar($0) }))
                    guard var set = ScalarSet.posix(name) else { throw error("unknown POSIX class name '\(name)'", start) }
                    if flags.caseless && (name == "upper" || name == "lower") { set = ScalarSet.posix("alpha") ?? set }
                    pos = j + 2
                    return .set(negated ? set.inverted() : set)
                }
            }
            if c != 0x5C { pos += 1; return .scalar(c) }
            pos += 1
            guard let e = peek() else { throw error("missing terminating ] for character class", classStart) }
            pos += 1
            switch e {
            case 0x62: return .scalar(0x08)                                  // \b is backspace here
            case 0x31...0x37:                                                // octal \1 .. \777
                var v = e - 0x30
                var digits = 1
                while digits < 3, let d = peek(), d >= 0x30 && d <= 0x37 { v = v * 8 + (d - 0x30); digits += 1; pos += 1 }
                return .scalar(v)
            case 0x42, 0x41, 0x7A, 0x5A, 0x4E, 0x38, 0x39:
                throw error("escape sequence \\\(Character(Unicode.Scalar(UInt8(e)))) is not allowed in a character class", start)
            case 0x51: throw error("\\Q...\\E inside a character class is not supported", start)
            case 0x45: throw error("\\E inside a character class is not supported", start)
            default: break
            }
            if let r = try parseCodeEscape(e, start: start) {
                switch r {
                case .scalar(let v): return .scalar(v)
                case .set(let s): return .set(s)
                }
            }
            if isAlnum(e) { throw error("unrecognized escape sequence \\\(Character(Unicode.Scalar(UInt8(e))))", start) }
            return .scalar(e)
        }

        mutating func parseClass() throws(RegexSyntaxError) -> Node {
            let start = pos
            pos += 1
            // "[:alpha:]" is a mistake for "[[:alpha:]]" (PCRE refuses it too).
            if let d = peek(), d == 0x3A || d == 0x2E || d == 0x3D {
                var j = pos + 1
                while j < src.count, (src[j] >= 0x61 && src[j] <= 0x7A) || (src[j] >= 0x41 && src[j] <= 0x5A) || src[j] == 0x5E { j += 1 }
                if j > pos + 1, j + 1 < src.count, src[j] == d, src[j + 1] == 0x5D {
                    throw error("POSIX classes such as [:alpha:] are only valid inside brackets, as in [[:alpha:]]", start)
                }
            }
            var negate = false
            if peek() == 0x5E { negate = true; pos += 1 }
            var foldable = ScalarSet()
            var fixed = ScalarSet()
            var first = true
            while true {
                guard let c = peek() else { throw error("missing terminating ] for character class", start) }
                if c == 0x5D && !first { pos += 1; break }
                first = false
                let itemPos = pos
                let item = try parseClassItem(classStart: start)
                let isRange = peek() == 0x2D && peek(1) != nil && peek(1) != 0x5D
                switch item {
                case .scalar(let lo):
                    if isRange {
                        let dash = pos
                        pos += 1
                        let hiItem = try parseClassItem(classStart: start)
                        guard case .scalar(let hi) = hiItem else { throw error("invalid range in character class", dash) }
                        if lo > hi { throw error("range out of order in character class", itemPos) }
                        foldable.add(lo, hi)
                    } else {
                        foldable.add(lo)
                    }
                case .set(let s):
                    if isRange { throw error("invalid range in character class", pos) }
                    fixed.add(s)
                }
            }
            var set = flags.caseless ? CaseFold.close(foldable) : foldable
            set.add(fixed)
            return .set(negate ? set.inverted() : set)
        }
    }

    // MARK: - Program

    enum Inst: Sendable {
        case char(UInt32, Int32)     // scalar, next
        case set(Int32, Int32)       // class index, next
        case any(Int32)              // next
        case anyNoNL(Int32)          // next
        case split(Int32, Int32)     // preferred, other
        case jmp(Int32)
        case save(Int32)             // capture slot
        case assert(AssertKind)
        case match
    }

    /// A class: ASCII bitmap plus sorted non-ASCII ranges in the program's pool.
    struct CharClass: Sendable {
        var lo: UInt64 = 0
        var hi: UInt64 = 0
        var start: Int32 = 0     // index of the first range (a pair) in the pool
        var count: Int32 = 0     // number of ranges

        @inline(__always)
        func contains(_ c: UInt32, _ pool: UnsafePointer<UInt32>) -> Bool {
            if c < 64 { return (lo &>> UInt64(c)) & 1 != 0 }
            if c < 128 { return (hi &>> UInt64(c &- 64)) & 1 != 0 }
            var a = Int(start), b = Int(start) + Int(count) - 1
            while a <= b {
                let m = (a + b) >> 1
                if c < pool[2 * m] { b = m - 1 } else if c > pool[2 * m + 1] { a = m + 1 } else { return true }
            }
            return false
        }
    }

    struct Program: Sendable {
        var insts: [Inst] = []
        var classes: [CharClass] = []
        var pool: [UInt32] = []
        var nslots = 2
        var threadCap = 0
        var anchored = false
        /// Bytes that can begin a match (a scalar's lead byte), when the pattern cannot match empty.
        var firstBytes: [UInt64]? = nil

        // MARK: Pike VM driver

        /// Runs the Pike VM. With `captures`, returns the slots of the leftmost-first match;
        /// without, returns [] as soon as any match is found. nil: no match.
        func run(_ input: UnsafePointer<UInt8>, _ n: Int, captures: Bool) -> [Int]? {
            let ns = captures ? nslots : 0
            let plen = insts.count
            let tc = threadCap
            let total = plen + 2 * tc + 2 * tc * ns + 2 * ns + 2 * (plen + 2)
            return insts.withUnsafeBufferPointer { ib in
                classes.withUnsafeBufferPointer { cb in
                    pool.withUnsafeBufferPointer { pb in
                        withUnsafeTemporaryAllocation(of: Int.self, capacity: total) { mem -> [Int]? in
                            guard let base = mem.baseAddress, let ip = ib.baseAddress,
                                  let cp = cb.baseAddress, let pp = pb.baseAddress else { return nil }
                            let marks = base
                            marks.initialize(repeating: 0, count: plen)
                            var cPcs = base + plen
                            var nPcs = cPcs + tc
                            var cCaps = nPcs + tc
                            var nCaps = cCaps + tc * ns
                            let scratch = nCaps + tc * ns
                            let best = scratch + ns
                            let stack = best + ns
                            var vm = PikeVM(insts: ip, classes: cp, pool: pp, input: input, n: n, ns: ns,
                                            marks: marks, stack: stack, scratch: scratch)
                            var cCount = 0
                            var nCount = 0
                            var matched = false
                            var pos = 0
                            let filter = firstBytes
                            while true {
                                if !matched && (pos == 0 || !anchored) {
                                    if cCount == 0, let f = filter {
                                        let from = pos
                                        while pos < n {
                                            let b = Int(input[pos])
                                            if (f[b >> 6] >> UInt64(b & 63)) & 1 != 0 { break }
                                            pos += 1
                                        }
                                        if pos >= n { break }
                                        if pos != from { vm.gen += 1 }
                                    }
                                    for s in 0..<ns { scratch[s] = -1 }
                                    vm.add(cPcs, cCaps, &cCount, 0, pos)
                                }
                                if cCount == 0 {
                                    // Nothing alive: done, unless a match can still start further on.
                                    if matched || anchored || pos >= n { break }
                                    pos += decodeScalar(input, pos, n).1
                                    vm.gen += 1
                                    continue
                                }
                                let atEnd = pos >= n
                                var c: UInt32 = 0
                                var len = 0
                                if !atEnd { (c, len) = decodeScalar(input, pos, n) }
                                let next = pos + len
                                vm.gen += 1
                                nCount = 0
                                var i = 0
                                while i < cCount {
                                    let pc = cPcs[i]
                                    var target = -1
                                    switch ip[pc] {
                                    case .match:
                                        if ns == 0 { return [] }
                                        let src = cCaps + i * ns
                                        for s in 0..<ns { best[s] = src[s] }
                                        matched = true
                                        i = cCount
                                        continue
                                    case .char(let ch, let nx):
                                        if !atEnd && c == ch { target = Int(nx) }
                                    case .set(let idx, let nx):
                                        if !atEnd && cp[Int(idx)].contains(c, pp) { target = Int(nx) }
                                    case .any(let nx):
                                        if !atEnd { target = Int(nx) }
                                    case .anyNoNL(let nx):
                                        if !atEnd && c != 0x0A { target = Int(nx) }
                                    default:
                                        break
                                    }
                                    if target >= 0 {
                                        let src = cCaps + i * ns
                                        for s in 0..<ns { scratch[s] = src[s] }
                                        vm.add(nPcs, nCaps, &nCount, target, next)
                                    }
                                    i += 1
                                }
                                swap(&cPcs, &nPcs)
                                swap(&cCaps, &nCaps)
                                cCount = nCount
                                if atEnd { break }
                                pos = next
                            }
                            if !matched { return nil }
                            return Array(UnsafeBufferPointer(start: best, count: ns))
                        }
                    }
                }
            }
        }

        // MARK: Bounded backtracker

        static let maxBacktrackBits = 256 * 1024

        /// Whether `backtrack` may run on an input of `n` bytes: its visited set,
        /// one bit per (instruction, position), must stay small.
        @inline(__always)
        func canBacktrack(_ n: Int) -> Bool {
            let (cells, o) = insts.count.multipliedReportingOverflow(by: n + 1)
            return !o && cells <= Program.maxBacktrackBits
        }

        /// Depth-first search in priority order that never revisits an (instruction, position)
        /// pair, so it is linear like the Pike VM and finds the same leftmost-first match
        /// (a pair already explored led to no match, whatever start or path reached it).
        /// Faster than the Pike VM on short inputs. Same results as `run`.
        func backtrack(_ input: UnsafePointer<UInt8>, _ n: Int, captures: Bool) -> [Int]? {
            let ns = captures ? nslots : 0
            let plen = insts.count
            let width = n + 1
            let cells = plen * width
            let words = (cells + 63) / 64
            return insts.withUnsafeBufferPointer { ib in
                classes.withUnsafeBufferPointer { cb in
                    pool.withUnsafeBufferPointer { pb in
                        // visited bits, then the capture slots, then the job stack: each job is pushed
                        // while visiting a new (instruction, position) pair, so 2 Ints per pair suffice.
                        withUnsafeTemporaryAllocation(of: Int.self, capacity: words + ns + 2 * cells + 2) { mem -> [Int]? in
                            guard let base = mem.baseAddress, let ip = ib.baseAddress,
                                  let cp = cb.baseAddress, let pp = pb.baseAddress else { return nil }
                            let visited = base
                            visited.initialize(repeating: 0, count: words)
                            let slots = base + words
                            for s in 0..<ns { slots[s] = -1 }
                            let stack = slots + ns
                            var sp = 0
                            let filter = firstBytes
                            var start = 0
                            while start <= n {
                                if let f = filter {
                                    while start < n {
                                        let b = Int(input[start])
                                        if (f[b >> 6] >> UInt64(b & 63)) & 1 != 0 { break }
                                        start += 1
                                    }
                                    if start >= n { return nil }
                                }
                                stack[0] = 0
                                stack[1] = start
                                sp = 2
                                while sp > 0 {
                                    sp -= 2
                                    let a = stack[sp], b = stack[sp + 1]
                                    if a < 0 { slots[-a - 1] = b; continue }
                                    var pc = a, pos = b
                                    walk: while true {
                                        let bit = pc * width + pos
                                        let w = bit >> 6, m = 1 &<< (bit & 63)
                                        if visited[w] & m != 0 { break walk }
                                        visited[w] |= m
                                        switch ip[pc] {
                                        case .match:
                                            return Array(UnsafeBufferPointer(start: slots, count: ns))
                                        case .char(let ch, let nx):
                                            guard pos < n else { break walk }
                                            let (c, len) = decodeScalar(input, pos, n)
                                            guard c == ch else { break walk }
                                            pc = Int(nx); pos += len
                                        case .set(let idx, let nx):
                                            guard pos < n else { break walk }
                                            let (c, len) = decodeScalar(input, pos, n)
                                            guard cp[Int(idx)].contains(c, pp) else { break walk }
                                            pc = Int(nx); pos += len
                                        case .any(let nx):
                                            guard pos < n else { break walk }
                                            pc = Int(nx); pos += decodeScalar(input, pos, n).1
                                        case .anyNoNL(let nx):
                                            guard pos < n, input[pos] != 0x0A else { break walk }
                                            pc = Int(nx); pos += decodeScalar(input, pos, n).1
                                        case .jmp(let t):
                                            pc = Int(t)
                                        case .split(let x, let y):
                                            stack[sp] = Int(y); stack[sp + 1] = pos; sp += 2
                                            pc = Int(x)
                                        case .save(let k):
                                            let slot = Int(k)
                                            if slot < ns {
                                                stack[sp] = -slot - 1; stack[sp + 1] = slots[slot]; sp += 2
                                                slots[slot] = pos
                                            }
                                            pc += 1
                                        case .assert(let k):
                                            guard assertHolds(k, input, n, pos) else { break walk }
                                            pc += 1
                                        }
                                    }
                                }
                                if anchored { return nil }
                                if start >= n { break }
                                start += decodeScalar(input, start, n).1
                            }
                            return nil
                        }
                    }
                }
            }
        }
    }


    struct Compiler {
        var prog = Program()

        var pc: Int { prog.insts.count }

        @discardableResult
        mutating func emit(_ i: Inst) -> Int {
            prog.insts.append(i)
            return prog.insts.count - 1
        }

        mutating func compile(_ tree: Node, groupCount: Int) throws(RegexSyntaxError) -> Program {
            let estimate = sat(tree.size, 3)
            if estimate > Limits.maxInstructions {
                throw RegexSyntaxError(message: "pattern too large (it would compile to more than \(Limits.maxInstructions) instructions)", offset: 0)
            }
            prog.nslots = 2 * (groupCount + 1)
            prog.insts.reserveCapacity(estimate)
            emit(.save(0))
            emitNode(tree)
            emit(.save(1))
            emit(.match)
            // sentinels so the pools are never empty
            prog.classes.append(CharClass())
            prog.pool.append(contentsOf: [1, 0])
            finish()
            // Each live thread carries its capture slots: bound the VM's per-match memory.
            if prog.threadCap * prog.nslots > Limits.maxThreadSlots {
                throw RegexSyntaxError(message: "pattern too large (too many capture groups for its size)", offset: 0)
            }
            return prog
        }

        mutating func emitNode(_ node: Node) {
            switch node {
            case .empty: break
            case .literal(let c): emit(.char(c, Int32(pc + 1)))
            case .dot(let all): emit(all ? .any(Int32(pc + 1)) : .anyNoNL(Int32(pc + 1)))
            case .assertion(let k): emit(.assert(k))
            case .set(let s): emitSet(s)
            case .capture(let i, let n):
                emit(.save(Int32(2 * i)))
                emitNode(n)
                emit(.save(Int32(2 * i + 1)))
            case .concat(let ns):
                for n in ns { emitNode(n) }
            case .alternation(let ns):
                var jumps: [Int] = []
                for (k, n) in ns.enumerated() {
                    if k < ns.count - 1 {
                        let sp = emit(.split(Int32(pc + 1), 0))
                        emitNode(n)
                        jumps.append(emit(.jmp(0)))
                        prog.insts[sp] = .split(Int32(sp + 1), Int32(pc))
                    } else {
                        emitNode(n)
                    }
                }
                for j in jumps { prog.insts[j] = .jmp(Int32(pc)) }
            case .repetition(let n, let mn, let mx, let greedy):
                emitRepetition(node, n, mn, mx, greedy)
            }
        }

        mutating func split(_ at: Int, body: Int, exit: Int, greedy: Bool) {
            prog.insts[at] = greedy ? .split(Int32(body), Int32(exit)) : .split(Int32(exit), Int32(body))
        }

        mutating func emitRepetition(_ whole: Node, _ n: Node, _ mn: Int, _ mx: Int, _ greedy: Bool) {
            if mx == 0 { return }
            if mx < 0 {
                if whole.needsFreshCopy {
                    // X* or X{n,} where X can match empty. PCRE ends an unbounded loop after an
                    // iteration that matched empty, at that point in priority order and with that
                    // iteration's captures. A Pike VM keeps one thread per (instruction, position),
                    // so an iteration starting at a position must not share instructions with one
                    // still running there: F, a fresh copy of X entered from the loop head, stays
                    // in F while it consumes nothing and leaves the loop at its end; its first
                    // consuming step continues in P, the original X, whose end loops back.
                    //   [jmp F]  head: split(F, out)  P  jmp head  F  jmp out  out:
                    for _ in 0..<Swift.max(mn - 1, 0) { emitNode(n) }
                    let entry = mn > 0 ? emit(.jmp(0)) : -1
                    let head = emit(.jmp(0))
                    let pStart = pc
                    emitNode(n)
                    let pEnd = pc
                    emit(.jmp(Int32(head)))
                    let fStart = pc
                    let delta = Int32(fStart - pStart)
                    func rel(_ t: Int32) -> Int32 {
                        Int(t) >= pStart && Int(t) <= pEnd ? t + delta : t
                    }
                    for k in pStart..<pEnd {
                        let inst = prog.insts[k]
                        switch inst {
                        case .split(let a, let b): emit(.split(rel(a), rel(b)))
                        case .jmp(let t): emit(.jmp(rel(t)))
                        default: emit(inst)     // consuming steps keep their targets in P
                        }
                    }
                    let fExit = emit(.jmp(0))
                    let out = pc
                    prog.insts[fExit] = .jmp(Int32(out))
                    if entry >= 0 { prog.insts[entry] = .jmp(Int32(fStart)) }
                    split(head, body: fStart, exit: out, greedy: greedy)
                    return
                }
                if mn == 0 {
                    // X* as (?:X+)? (X cannot match empty here)
                    let first = emit(.jmp(0))
                    let body = pc
                    emitNode(n)
                    let loop = emit(.jmp(0))
                    let out = pc
                    split(first, body: body, exit: out, greedy: greedy)
                    split(loop, body: body, exit: out, greedy: greedy)
                } else {
                    for _ in 0..<(mn - 1) { emitNode(n) }
                    let body = pc
                    emitNode(n)
                    let loop = emit(.jmp(0))
                    split(loop, body: body, exit: pc, greedy: greedy)
                }
                return
            }
            for _ in 0..<mn { emitNode(n) }
            // X{0,k} as (X(X(...)?)?)?
            var splits: [Int] = []
            for _ in 0..<(mx - mn) {
                splits.append(emit(.jmp(0)))
                emitNode(n)
            }
            for s in splits { split(s, body: s + 1, exit: pc, greedy: greedy) }
        }

        mutating func emitSet(_ s: ScalarSet) {
            let r = s.normalized()
            let next = Int32(pc + 1)
            if r.count == 1 && r[0].0 == r[0].1 { emit(.char(r[0].0, next)); return }
            if r.count == 1 && r[0].0 == 0 && r[0].1 == 0x10FFFF { emit(.any(next)); return }
            if r.count == 2 && r[0] == (0, 9) && r[1] == (11, 0x10FFFF) { emit(.anyNoNL(next)); return }
            var cls = CharClass()
            cls.start = Int32(prog.pool.count / 2)
            for (lo, hi) in r {
                if lo < 128 {
                    for c in lo...min(hi, 127) {
                        if c < 64 { cls.lo |= 1 << UInt64(c) } else { cls.hi |= 1 << UInt64(c - 64) }
                    }
                }
                if hi >= 128 {
                    prog.pool.append(max(lo, 128))
                    prog.pool.append(hi)
                    cls.count += 1
                }
            }
            prog.classes.append(cls)
            emit(.set(Int32(prog.classes.count - 1), next))
        }

        /// Thread capacity, start anchoring and the first-byte filter.
        mutating func finish() {
            let insts = prog.insts
            prog.threadCap = insts.reduce(0) { n, i in
                switch i {
                case .char, .set, .any, .anyNoNL, .match: return n + 1
                default: return n
                }
            }
            // Anchored: every path from the start meets \A (or ^ without (?m)) before consuming.
            var seen = [Bool](repeating: false, count: insts.count)
            var stack = [0]
            var anchored = true
            while let p = stack.popLast() {
                if seen[p] { continue }
                seen[p] = true
                switch insts[p] {
                case .jmp(let t): stack.append(Int(t))
                case .split(let a, let b): stack.append(Int(b)); stack.append(Int(a))
                case .save: stack.append(p + 1)
                case .assert(let k): if k != .start { stack.append(p + 1) }
                default: anchored = false
                }
            }
            prog.anchored = anchored
            // First bytes: lead bytes of the scalars the first consuming step can take.
            var bytes: [UInt64] = [0, 0, 0, 0]
            func mark(_ b: Int) { bytes[b >> 6] |= 1 << UInt64(b & 63) }
            func markHigh() { for b in 0x80...0xFF { mark(b) } }
            var useful = !anchored
            seen = [Bool](repeating: false, count: insts.count)
            stack = [0]
            while useful, let p = stack.popLast() {
                if seen[p] { continue }
                seen[p] = true
                switch insts[p] {
                case .jmp(let t): stack.append(Int(t))
                case .split(let a, let b): stack.append(Int(b)); stack.append(Int(a))
                case .save, .assert: stack.append(p + 1)
                case .match, .any, .anyNoNL: useful = false
                case .char(let c, _):
                    if c < 0x80 { mark(Int(c)) } else { markHigh() }
                case .set(let idx, _):
                    let cls = prog.classes[Int(idx)]
                    for b in 0..<64 where (cls.lo >> UInt64(b)) & 1 != 0 { mark(b) }
                    for b in 0..<64 where (cls.hi >> UInt64(b)) & 1 != 0 { mark(b + 64) }
                    if cls.count > 0 { markHigh() }
                }
            }
            let population = bytes.reduce(0) { $0 + $1.nonzeroBitCount }
            prog.firstBytes = useful && population <= 200 ? bytes : nil
        }
    }

    // MARK: - UTF-8

    @inline(__always)
    static func decodeScalar(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> (UInt32, Int) {
        let b0 = UInt32(p[i])
        if b0 < 0x80 { return (b0, 1) }
        if b0 < 0xC2 { return (0xFFFD, 1) }
        if b0 < 0xE0 {
            guard i + 1 < n else { return (0xFFFD, 1) }
            let b1 = UInt32(p[i + 1])
            guard b1 & 0xC0 == 0x80 else { return (0xFFFD, 1) }
            return ((b0 & 0x1F) << 6 | (b1 & 0x3F), 2)
        }
        if b0 < 0xF0 {
            guard i + 2 < n else { return (0xFFFD, 1) }
            let b1 = UInt32(p[i + 1]), b2 = UInt32(p[i + 2])
            guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80 else { return (0xFFFD, 1) }
            if (b0 == 0xE0 && b1 < 0xA0) || (b0 == 0xED && b1 >= 0xA0) { return (0xFFFD, 1) }
            return ((b0 & 0x0F) << 12 | (b1 & 0x3F) << 6 | (b2 & 0x3F), 3)
        }
        if b0 < 0xF5 {
            guard i + 3 < n else { return (0xFFFD, 1) }
            let b1 = UInt32(p[i + 1]), b2 = UInt32(p[i + 2]), b3 = UInt32(p[i + 3])
            guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80, b3 & 0xC0 == 0x80 else { return (0xFFFD, 1) }
            if (b0 == 0xF0 && b1 < 0x90) || (b0 == 0xF4 && b1 >= 0x90) { return (0xFFFD, 1) }
            return ((b0 & 0x07) << 18 | (b1 & 0x3F) << 12 | (b2 & 0x3F) << 6 | (b3 & 0x3F), 4)
        }
        return (0xFFFD, 1)
    }

    @inline(__always)
    static func isWordByte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F
    }

    // MARK: - Pike VM

    struct PikeVM {
        let insts: UnsafePointer<Inst>
        let classes: UnsafePointer<CharClass>
        let pool: UnsafePointer<UInt32>
        let input: UnsafePointer<UInt8>
        let n: Int
        let ns: Int
        let marks: UnsafeMutablePointer<Int>
        let stack: UnsafeMutablePointer<Int>
        let scratch: UnsafeMutablePointer<Int>
        var gen = 1

        @inline(__always)
        func holds(_ k: AssertKind, _ i: Int) -> Bool { assertHolds(k, input, n, i) }

        /// Adds the threads reachable from `pc0` at `pos` (epsilon closure, in priority order),
        /// carrying the captures in `scratch`.
        @inline(__always)
        mutating func add(_ pcs: UnsafeMutablePointer<Int>, _ caps: UnsafeMutablePointer<Int>, _ count: inout Int, _ pc0: Int, _ pos: Int) {
            var sp = 1
            stack[0] = pc0
            while sp > 0 {
                sp -= 1
                let a = stack[2 * sp]
                if a < 0 {
                    scratch[-a - 1] = stack[2 * sp + 1]
                    continue
                }
                var pc = a
                walk: while true {
                    if marks[pc] == gen { break walk }
                    marks[pc] = gen
                    switch insts[pc] {
                    case .jmp(let t):
                        pc = Int(t)
                    case .split(let x, let y):
                        stack[2 * sp] = Int(y)
                        sp += 1
                        pc = Int(x)
                    case .save(let k):
                        let slot = Int(k)
                        if slot < ns {
                            stack[2 * sp] = -slot - 1
                            stack[2 * sp + 1] = scratch[slot]
                            sp += 1
                            scratch[slot] = pos
                        }
                        pc += 1
                    case .assert(let k):
                        if !holds(k, pos) { break walk }
                        pc += 1
                    default:
                        pcs[count] = pc
                        let dst = caps + count * ns
                        for s in 0..<ns { dst[s] = scratch[s] }
                        count += 1
                        break walk
                    }
                }
            }
        }
    }

    /// Whether assertion `k` holds at byte offset `i` of the `n`-byte input.
    @inline(__always)
    static func assertHolds(_ k: AssertKind, _ input: UnsafePointer<UInt8>, _ n: Int, _ i: Int) -> Bool {
        switch k {
        case .start: return i == 0
        case .end: return i == n
        case .endOrFinalNL: return i == n || (i == n - 1 && input[i] == 0x0A)
        case .lineStart: return i == 0 || (i < n && input[i - 1] == 0x0A)
        case .lineEnd: return i == n || input[i] == 0x0A
        case .wordBoundary, .notWordBoundary:
            let before = i > 0 && isWordByte(input[i - 1])
            let after = i < n && isWordByte(input[i])
            return (before != after) == (k == .wordBoundary)
        }
    }

    // MARK: - DFA (boolean search)

    /// A DFA for `matches`, built eagerly at init for patterns whose only assertions are
    /// `\A ^ $ \z \Z` (without (?m)) and whose automaton stays small. A state is the set
    /// of NFA instructions (consuming steps, match, and pending end assertions) live at
    /// a position; the alphabet is split into classes of scalars no instruction tells apart.
    struct DFA: Sendable {
        static let matchBit: UInt8 = 1, deadBit: UInt8 = 2, endBit: UInt8 = 4, finalNLBit: UInt8 = 8
        let table: [Int32]
        let flags: [UInt8]
        let nclasses: Int
        let asciiClass: [UInt16]
        let bounds: [UInt32]
        let start: Int
        let emptyMatch: Bool
        let newlineOnlyMatch: Bool

        static let maxStates = 2000
        static let maxCells = 100_000
        static let maxWork = 3_000_000

        @inline(__always)
        func classOf(_ c: UInt32, _ b: UnsafePointer<UInt32>) -> Int {
            var lo = 0, hi = bounds.count   // last bound <= c
            while hi - lo > 1 {
                let m = (lo + hi) >> 1
                if b[m] <= c { lo = m } else { hi = m }
            }
            return lo
        }

        func matches(_ p: UnsafePointer<UInt8>, _ n: Int) -> Bool {
            if n == 0 { return emptyMatch }
            if n == 1 && p[0] == 0x0A { return newlineOnlyMatch }
            return table.withUnsafeBufferPointer { tb in
                flags.withUnsafeBufferPointer { fb in
                    asciiClass.withUnsafeBufferPointer { ab in
                        bounds.withUnsafeBufferPointer { bb in
                            guard let t = tb.baseAddress, let f = fb.baseAddress, let a = ab.baseAddress,
                                  let bd = bb.baseAddress else { return false }
                            let nc = nclasses
                            var s = start
                            if f[s] & DFA.matchBit != 0 { return true }
                            var i = 0
                            while i < n {
                                let byte = p[i]
                                let k: Int
                                if byte < 0x80 {
                                    if byte == 0x0A && i + 1 == n { return f[s] & DFA.finalNLBit != 0 }
                                    k = Int(a[Int(byte)])
                                    i += 1
                                } else {
                                    let (c, l) = decodeScalar(p, i, n)
                                    k = classOf(c, bd)
                                    i += l
                                }
                                s = Int(t[s * nc + k])
                                let fl = f[s]
                                if fl & (DFA.matchBit | DFA.deadBit) != 0 { return fl & DFA.matchBit != 0 }
                            }
                            return f[s] & DFA.endBit != 0
                        }
                    }
                }
            }
        }

        /// Closure evaluation modes for end assertions.
        enum EndMode { case pending, atEnd, beforeFinalNL }

        static func build(_ prog: Program) -> DFA? {
            let insts = prog.insts
            let plen = insts.count
            for i in insts {
                if case .assert(let k) = i, k != .start && k != .end && k != .endOrFinalNL { return nil }
            }
            // Alphabet classes.
            var cuts = Set<UInt32>([0, 0x0A, 0x0B])
            let poolCopy = prog.pool
            for i in insts {
                switch i {
                case .char(let c, _): cuts.insert(c); cuts.insert(c + 1)
                case .set(let idx, _):
                    let cls = prog.classes[Int(idx)]
                    var prev = false
                    for c in 0..<129 {
                        let inside = c < 128 && (c < 64 ? (cls.lo >> UInt64(c)) & 1 != 0 : (cls.hi >> UInt64(c - 64)) & 1 != 0)
                        if inside != prev { cuts.insert(UInt32(c)) }
                        prev = inside
                    }
                    for r in 0..<Int(cls.count) {
                        let lo = poolCopy[2 * (Int(cls.start) + r)], hi = poolCopy[2 * (Int(cls.start) + r) + 1]
                        cuts.insert(lo); cuts.insert(hi + 1)
                    }
                default: break
                }
            }
            let bounds = cuts.filter { $0 <= 0x10FFFF }.sorted()
            let nc = bounds.count
            if nc > 4096 { return nil }
            func classOf(_ c: UInt32) -> Int {
                var lo = 0, hi = nc
                while hi - lo > 1 { let m = (lo + hi) >> 1; if bounds[m] <= c { lo = m } else { hi = m } }
                return lo
            }
            let asciiClass = (0..<128).map { UInt16(classOf(UInt32($0))) }

            var visited = [Int](repeating: 0, count: plen)
            var stamp = 0
            var work = 0
            var matchPC = -1
            for (k, i) in insts.enumerated() { if case .match = i { matchPC = k } }

            func accepts(_ inst: Inst, _ c: UInt32) -> Int? {
                prog.pool.withUnsafeBufferPointer { pb -> Int? in
                    guard let pp = pb.baseAddress else { return nil }
                    switch inst {
                    case .char(let ch, let nx): return ch == c ? Int(nx) : nil
                    case .set(let idx, let nx): return prog.classes[Int(idx)].contains(c, pp) ? Int(nx) : nil
                    case .any(let nx): return Int(nx)
                    case .anyNoNL(let nx): return c != 0x0A ? Int(nx) : nil
                    default: return nil
                    }
                }
            }

            /// Epsilon closure of `seeds`; `out` gets consuming steps, match and pending end assertions.
            func closure(_ seeds: [Int], atStart: Bool, mode: EndMode, fresh: Bool = true, into out: inout [Int32]) {
                if fresh { stamp += 1 }
                var stack = seeds.reversed() as [Int]
                while let p = stack.popLast() {
                    if visited[p] == stamp { continue }
                    visited[p] = stamp
                    work += 1
                    switch insts[p] {
                    case .jmp(let t): stack.append(Int(t))
                    case .split(let a, let b): stack.append(Int(b)); stack.append(Int(a))
                    case .save: stack.append(p + 1)
                    case .assert(let k):
                        switch k {
                        case .start: if atStart { stack.append(p + 1) }
                        case .end, .endOrFinalNL:
                            switch mode {
                            case .pending: out.append(Int32(p))
                            case .atEnd: stack.append(p + 1)
                            case .beforeFinalNL: if k == .endOrFinalNL { stack.append(p + 1) }
                            }
                        default: break
                        }
                    default: out.append(Int32(p))
                    }
                }
            }

            /// The state's members after settling its pending assertions in `mode`.
            func resolve(_ members: [Int32], mode: EndMode) -> [Int32] {
                var out: [Int32] = []
                stamp += 1
                var seeds: [Int] = []
                for m in members {
                    if case .assert(let k) = insts[Int(m)] {
                        if mode == .atEnd || (mode == .beforeFinalNL && k == .endOrFinalNL) { seeds.append(Int(m) + 1) }
                    } else {
                        visited[Int(m)] = stamp
                        out.append(m)
                    }
                }
                closure(seeds, atStart: false, mode: mode, fresh: false, into: &out)
                return out
            }

            let unanchored = !prog.anchored
            func acceptsAfterFinalNL(_ settled: [Int32]) -> Bool {
                if settled.contains(Int32(matchPC)) { return true }
                var seeds: [Int] = []
                for m in settled { if let nx = accepts(insts[Int(m)], 0x0A) { seeds.append(nx) } }
                if unanchored { seeds.append(0) }
                var out: [Int32] = []
                closure(seeds, atStart: false, mode: .atEnd, into: &out)
                return out.contains(Int32(matchPC))
            }

            var emptyOut: [Int32] = []
            closure([0], atStart: true, mode: .atEnd, into: &emptyOut)
            let emptyMatch = emptyOut.contains(Int32(matchPC))
            var nlOut: [Int32] = []
            closure([0], atStart: true, mode: .beforeFinalNL, into: &nlOut)
            let newlineOnlyMatch = acceptsAfterFinalNL(nlOut)

            var states: [[Int32]] = []
            var index: [[Int32]: Int] = [:]
            var table: [Int32] = []
            var flags: [UInt8] = []
            func intern(_ set: [Int32]) -> Int? {
                let key = set.sorted()
                if let id = index[key] { return id }
                if states.count >= maxStates || (states.count + 1) * nc > maxCells { return nil }
                let id = states.count
                states.append(key)
                index[key] = id
                return id
            }
            var start0: [Int32] = []
            closure([0], atStart: true, mode: .pending, into: &start0)
            guard let startID = intern(start0) else { return nil }
            var next = 0
            while next < states.count {
                let members = states[next]
                var fl: UInt8 = 0
                if members.contains(Int32(matchPC)) { fl |= matchBit }
                if members.isEmpty { fl |= deadBit }
                if resolve(members, mode: .atEnd).contains(Int32(matchPC)) { fl |= endBit }
                if acceptsAfterFinalNL(resolve(members, mode: .beforeFinalNL)) { fl |= finalNLBit }
                flags.append(fl)
                var row = [Int32](repeating: Int32(next), count: nc)
                if fl & (matchBit | deadBit) == 0 {
                    var cache: [[Int]: Int] = [:]
                    for k in 0..<nc {
                        var seeds: [Int] = []
                        for m in members { if let nx = accepts(insts[Int(m)], bounds[k]) { seeds.append(nx) } }
                        work += members.count
                        if let id = cache[seeds] { row[k] = Int32(id); continue }
                        var out: [Int32] = []
                        closure(unanchored ? seeds + [0] : seeds, atStart: false, mode: .pending, into: &out)
                        guard let id = intern(out) else { return nil }
                        cache[seeds] = id
                        row[k] = Int32(id)
                        if work > maxWork { return nil }
                    }
                }
                table.append(contentsOf: row)
                next += 1
                if work > maxWork { return nil }
            }
            return DFA(table: table, flags: flags, nclasses: nc, asciiClass: asciiClass, bounds: bounds,
                       start: startID, emptyMatch: emptyMatch, newlineOnlyMatch: newlineOnlyMatch)
        }
    }
}
