import XCTest
@testable import SluiceCore

final class LinearRegexTests: XCTestCase {
    /// (pattern, input, expected): expected is [whole match, group 1, ...] with nil for a group
    /// that did not participate, or nil for no match. Every row was checked against PCRE2
    /// (10.42, UTF mode, no UCP) when it was written.
    static let pcreTable: [(String, String, [String?]?)] = [
        ("(a|ab)(c|bcd)(d*)", "abcd", ["abcd", "a", "bcd", ""]),
        ("a|ab", "ab", ["a"]),
        ("ab|a", "ab", ["ab"]),
        ("(a|ab)(bc|c)", "abc", ["abc", "a", "bc"]),
        ("(a)|(b)", "b", ["b", nil, "b"]),
        ("(a)|b", "b", ["b", nil]),
        ("x(a|b|)y", "xy", ["xy", ""]),
        ("(?:(a)|b)*", "ab", ["ab", "a"]),
        ("(a+|b+)*c", "aabbc", ["aabbc", "bb"]),
        ("(a|b)*?b", "aab", ["aab", "a"]),
        ("a+?", "aaa", ["a"]),
        ("a*?", "aaa", [""]),
        ("a??b", "ab", ["ab"]),
        ("<.+?>", "<a><b>", ["<a>"]),
        ("<.+>", "<a><b>", ["<a><b>"]),
        ("a*?$", "aaa", ["aaa"]),
        ("a{2,3}", "aaaa", ["aaa"]),
        ("a{2,3}?", "aaaa", ["aa"]),
        ("a{2}", "a", nil),
        ("a{2,}", "aaaaa", ["aaaaa"]),
        ("a{0}b", "ab", ["b"]),
        ("(ab){2}", "ababab", ["abab", "ab"]),
        ("a{", "a{", ["a{"]),
        ("a{1,x}", "a{1,x}", ["a{1,x}"]),
        ("x{0,2}", "xxx", ["xx"]),
        ("(a*)*", "b", ["", ""]),
        ("(a*)*", "aab", ["aa", ""]),
        ("(a*)+", "aab", ["aa", ""]),
        ("(a|b?)*", "ab", ["ab", ""]),
        ("(a*)*b", "aab", ["aab", ""]),
        ("(?:|a)+b", "aab", ["aab"]),
        ("(?:a|)+b", "aab", ["aab"]),
        ("(a|){0,3}", "aab", ["aa", ""]),
        ("(a?)*?b", "aab", ["aab", "a"]),
        ("", "abc", [""]),
        ("x*", "abc", [""]),
        ("a*", "baaa", [""]),
        ("()", "", ["", ""]),
        ("^$", "", [""]),
        ("a$", "a\n", ["a"]),
        ("a$", "a\nb", nil),
        (#"a\z"#, "a\n", nil),
        (#"a\Z"#, "a\n", ["a"]),
        (#"a\Z"#, "a\n\n", nil),
        ("^$", "\n", [""]),
        (#"\Aab"#, "ab", ["ab"]),
        (#"\Aab"#, "cab", nil),
        ("^b", "a\nb", nil),
        ("(?m)^b$", "a\nb\nc", ["b"]),
        ("(?m)a$", "a\nb", ["a"]),
        ("(?m)^c", "a\nb\nc", ["c"]),
        ("(?m:^)x|y$", "ab\nx", ["x"]),
        ("$", "ab\n", [""]),
        (#"\bfoo\b"#, "a foo b", ["foo"]),
        (#"\bfoo\b"#, "afoo", nil),
        (#"\bfoo\b"#, "foo_bar foo", ["foo"]),
        (#"\Bo\B"#, "foo", ["o"]),
        (#"\b"#, "", nil),
        (#"\B"#, "", [""]),
        (#"\b\w+\b"#, "!!hello!!", ["hello"]),
        ("[abc]+", "xxcabz", ["cab"]),
        ("[^abc]+", "abxyzc", ["xyz"]),
        ("[a-z0-9_-]+", "##a-b_9Z", ["a-b_9"]),
        ("[a-z-]+", "x-y_z", ["x-y"]),
        ("[-a-c]+", "-ab", ["-ab"]),
        ("[a-c-]+", "b-c", ["b-c"]),
        ("[a-z-0]+", "-0a", ["-0a"]),
        ("[%--]+", "%,-", ["%,-"]),
        ("[^/]+", "/abc/def", ["abc"]),
        ("[]a]+", "]a]b", ["]a]"]),
        ("[^]a]", "]ab", ["b"]),
        (#"[\]\\]+"#, #"a]\b"#, [#"]\"#]),
        (#"[\d.]+"#, "v1.2.3", ["1.2.3"]),
        (#"[^\s]+"#, "  ab ", ["ab"]),
        (#"[\w-]+"#, "a-b_c d", ["a-b_c"]),
        (#"[\s\d]+"#, "a1 2b", ["1 2"]),
        (#"[\x41-\x43]+"#, "xABCD", ["ABC"]),
        ("[.]", "a.b", ["."]),
        (#"[\^x]+"#, "a^x", ["^x"]),
        ("[a^]+", "^a", ["^a"]),
        (#"[\b]"#, "a\u{8}b", ["\u{8}"]),
        (#"\d+"#, "ab123c", ["123"]),
        (#"\D+"#, "12ab3", ["ab"]),
        (#"\w+"#, "--ab_1--", ["ab_1"]),
        (#"\W+"#, "ab-+c", ["-+"]),
        (#"\s+"#, "a \t\nb", [" \t\n"]),
        (#"\S+"#, " ab ", ["ab"]),
        (#"\h+"#, "a \tb", [" \t"]),
        (#"\v"#, "a\u{B}b", ["\u{B}"]),
        (#"\N+"#, "ab\ncd", ["ab"]),
        ("[[:digit:]]+", "ab123", ["123"]),
        ("[[:alpha:]]+", "12abC3", ["abC"]),
        ("[[:alnum:]]+", "--a1B2--", ["a1B2"]),
        ("[[:upper:]]+", "abCDe", ["CD"]),
        ("[[:lower:]]+", "ABcdE", ["cd"]),
        ("[[:space:]]+", "a \t\nb", [" \t\n"]),
        ("[[:punct:]]+", "ab.,!cd", [".,!"]),
        ("[[:xdigit:]]+", "xDEADbeefz", ["DEADbeef"]),
        ("[[:word:]]+", "-a_1-", ["a_1"]),
        ("[[:^digit:]]+", "12ab3", ["ab"]),
        ("[[:alpha:][:digit:]]+", "-a1-", ["a1"]),
        ("[^[:alpha:]]+", "ab12cd", ["12"]),
        (#"\x41\x{42}\t\n"#, "AB\t\n", ["AB\t\n"]),
        (#"\x{263A}+"#, "x\u{263A}\u{263A}y", ["\u{263A}\u{263A}"]),
        (#"\/api\/"#, "/api/", ["/api/"]),
        (#"a\-b"#, "a-b", ["a-b"]),
        (#"\\"#, #"a\b"#, [#"\"#]),
        (#"\.\*\+\?\(\)\[\]\{\}\|\^\$"#, ".*+?()[]{}|^$", [".*+?()[]{}|^$"]),
        (#"\0"#, "a\0", ["\0"]),
        (#"\012"#, "a\n", ["\n"]),
        (#"\e\a\f\r"#, "\u{1B}\u{7}\u{C}\r", ["\u{1B}\u{7}\u{C}\r"]),
        (#"\cA"#, "\u{1}", ["\u{1}"]),
        (#"\Qa.b*\E+"#, "a.b**", ["a.b**"]),
        (#"\Qa.b"#, "xa.b", ["a.b"]),
        ("\u{E9}.", "x\u{E9}y", ["\u{E9}y"]),
        ("^.$", "\u{E9}", ["\u{E9}"]),
        ("^.{3}$", "\u{65E5}\u{672C}\u{8A9E}", ["\u{65E5}\u{672C}\u{8A9E}"]),
        ("^[^a]$", "\u{2603}", ["\u{2603}"]),
        (#"^\W$"#, "\u{1F600}", ["\u{1F600}"]),
        ("[\u{E0}-\u{FF}]+", "ab\u{E9}\u{E8}c", ["\u{E9}\u{E8}"]),
        (#"\w+"#, "caf\u{E9}", ["caf"]),
        ("a.b", "a\nb", nil),
        ("(?s)a.b", "a\nb", ["a\nb"]),
        ("a(?s:.)b", "a\nb", ["a\nb"]),
        (#"a\Nb"#, "a\nb", nil),
        ("(?i)^/Admin", "/admin/x", ["/admin"]),
        ("(?i)[a-c]+", "xAbCd", ["AbC"]),
        ("(?i)[^a]", "Ab", ["b"]),
        ("a(?i)b", "aB", ["aB"]),
        ("a(?i)b", "AB", nil),
        ("a(?i:b)c", "aBc", ["aBc"]),
        ("a(?i:b)c", "aBC", nil),
        ("(?i)a(?-i)b", "Ab", ["Ab"]),
        ("(?i)a(?-i)b", "AB", nil),
        ("(a(?i)b)c", "aBc", ["aBc", "aB"]),
        ("(a(?i)b)c", "aBC", nil),
        ("a(?i)b|c", "C", ["C"]),
        ("(?i)\u{E9}", "\u{C9}", ["\u{C9}"]),
        ("(?i)\u{C9}T\u{C9}", "\u{E9}t\u{E9}", ["\u{E9}t\u{E9}"]),
        ("(?i)\u{3C3}", "\u{3A3}\u{3C2}", ["\u{3A3}"]),
        ("(?i)[\u{E0}-\u{FE}]+", "\u{C0}\u{C9}x", ["\u{C0}\u{C9}"]),
        ("(?i)k", "\u{212A}", ["\u{212A}"]),
        (#"(?i)\d"#, "a1", ["1"]),
        ("(?i)[[:upper:]]+", "abC", ["abC"]),
        ("(?x) a b # comment\n c", "abc", ["abc"]),
        ("(?x)[ ]a", " a", [" a"]),
        (#"(?x)a\ b"#, "a b", ["a b"]),
        ("(?x) a + ", "aaa", ["aaa"]),
        ("(?#note)ab", "ab", ["ab"]),
        (#"(?<year>\d{4})-(?P<month>\d\d)-(?'day'\d\d)"#, "on 2024-05-01", ["2024-05-01", "2024", "05", "01"]),
        ("^/api/(.*)", "/api/v1/users", ["/api/v1/users", "v1/users"]),
        ("^/api/(.*)", "/apix", nil),
        ("^/v1/(.*)/get$", "/v1/users/42/get", ["/v1/users/42/get", "users/42"]),
        ("^/v1/(.*)/get$", "/v1/users/42/get/x", nil),
        ("^/internal/", "/internal/x", ["/internal/"]),
        ("^/internal/", "/public/internal/", nil),
        (#"\.(php|jsp)$"#, "/index.php", [".php", "php"]),
        (#"\.(php|jsp)$"#, "/index.php5", nil),
        (#"\.(php|jsp)$"#, "/a.jsp\n", [".jsp", "jsp"]),
        (#"^https?://[a-z]+\.example\.com$"#, "https://api.example.com", ["https://api.example.com"]),
        (#"^https?://[a-z]+\.example\.com$"#, "http://evil.com/?.example.com", nil),
        (#"^https?://[a-z]+\.example\.com$"#, "ftp://api.example.com", nil),
        ("^/api/v1/users/[0-9]+$", "/api/v1/users/12345", ["/api/v1/users/12345"]),
        ("^/api/v1/users/[0-9]+$", "/api/v1/users/", nil),
        (#"^/users/(\d+)/orders/(\d+)$"#, "/users/7/orders/42", ["/users/7/orders/42", "7", "42"]),
        ("^/(?<ver>v[0-9]+)/([^/]+)/?$", "/v2/items/", ["/v2/items/", "v2", "items"]),
        (#"^/static/.*\.(?:css|js|png)$"#, "/static/app/main.js", ["/static/app/main.js"]),
        (#"(?i)\.(jpg|jpeg|gif)$"#, "/IMG/a.JPG", [".JPG", "JPG"]),
        ("^/(en|fr|de)(/.*)?$", "/fr", ["/fr", "fr", nil]),
        ("^/(en|fr|de)(/.*)?$", "/de/docs", ["/de/docs", "de", "/docs"]),
        (#"^Mozilla/5\.0 \(([^)]+)\)"#, "Mozilla/5.0 (X11; Linux x86_64) Gecko", ["Mozilla/5.0 (X11; Linux x86_64)", "X11; Linux x86_64"]),
        (#"^Bearer\s+([A-Za-z0-9._~+/-]+=*)$"#, "Bearer abc.def-ghi", ["Bearer abc.def-ghi", "abc.def-ghi"]),
        (#"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"#, "10.0.12.255", ["10.0.12.255", "10", "0", "12", "255"]),
        (#"^[a-z0-9-]+\.svc\.cluster\.local$"#, "my-svc.svc.cluster.local", ["my-svc.svc.cluster.local"]),
        (#"(\w+)=(\w*)"#, "?a=1&b=", ["a=1", "a", "1"]),
        ("^(?:GET|HEAD)$", "HEAD", ["HEAD"]),
        ("^(?:GET|HEAD)$", "HEADX", nil),
    ]

    /// The same, compiled with `caseInsensitive: true`.
    static let caseInsensitiveTable: [(String, String, [String?]?)] = [
        ("^/API/", "/api/v1", ["/api/"]),
        ("abc", "xABCx", ["ABC"]),
        ("[x-z]+", "XyZ", ["XyZ"]),
        ("(?-i)a", "A", nil),
        ("\u{E9}", "\u{C9}", ["\u{C9}"]),
    ]

    /// Checks firstMatch (String and Substring), matches, and that the three engines agree.
    func check(_ re: LinearRegex, _ input: String, _ expected: [String?]?, file: StaticString = #filePath, line: UInt = #line) {
        let what = "\(re.pattern.debugDescription) on \(input.debugDescription)"
        let got = re.firstMatch(in: input).map { $0.map { $0.map { String(input[$0]) } } }
        XCTAssertEqual(got, expected, what, file: file, line: line)
        XCTAssertEqual(re.matches(input), expected != nil, "matches: " + what, file: file, line: line)
        if let expected { XCTAssertEqual(expected.count, re.captureCount + 1, "group count: " + what, file: file, line: line) }

        // Substring: its bounds are the subject's bounds; ranges index the base string.
        let padded = "<<" + input + ">>"
        let sub = padded.dropFirst(2).dropLast(2)
        let gotSub = re.firstMatch(in: sub).map { $0.map { $0.map { String(padded[$0]) } } }
        XCTAssertEqual(gotSub, expected, "substring: " + what, file: file, line: line)
        XCTAssertEqual(re.matches(sub), expected != nil, "substring matches: " + what, file: file, line: line)

        // Pike VM, bounded backtracker and DFA give the same answers.
        var s = input
        s.withUTF8 { buf in
            LinearRegex.withInput(buf) { p, n in
                let pike = re.program.run(p, n, captures: true)
                let backtrack = re.program.backtrack(p, n, captures: true)
                XCTAssertEqual(pike, backtrack, "pike vs backtrack: " + what, file: file, line: line)
                XCTAssertEqual(re.program.run(p, n, captures: false) != nil, pike != nil, "pike bool: " + what, file: file, line: line)
                XCTAssertEqual(re.program.backtrack(p, n, captures: false) != nil, pike != nil, "backtrack bool: " + what, file: file, line: line)
                if let dfa = re.dfa { XCTAssertEqual(dfa.matches(p, n), pike != nil, "dfa: " + what, file: file, line: line) }
            }
        }
    }

    func testPCRECompatibilityTable() throws {
        for (pattern, input, expected) in Self.pcreTable {
            let re: LinearRegex
            do { re = try LinearRegex(pattern) } catch {
                XCTFail("\(pattern.debugDescription) did not compile: \(error)")
                continue
            }
            check(re, input, expected)
        }
    }

    func testCaseInsensitiveOption() throws {
        for (pattern, input, expected) in Self.caseInsensitiveTable {
            check(try LinearRegex(pattern, caseInsensitive: true), input, expected)
        }
        XCTAssertNil(try LinearRegex("abc").firstMatch(in: "ABC"))
    }

    func testCaptureCountAndNames() throws {
        let re = try LinearRegex(#"^/(?<ver>v\d+)/(?:x|y)/(?P<id>\d+)(/.*)?$"#)
        XCTAssertEqual(re.captureCount, 3)
        XCTAssertEqual(re.groupNames, ["ver": 1, "id": 2])
        XCTAssertEqual(re.pattern, #"^/(?<ver>v\d+)/(?:x|y)/(?P<id>\d+)(/.*)?$"#)
        let path = "/v2/y/42"
        let m = try XCTUnwrap(re.firstMatch(in: path))
        XCTAssertEqual(m.count, 4)
        XCTAssertEqual(m[1].map { String(path[$0]) }, "v2")
        XCTAssertEqual(m[2].map { String(path[$0]) }, "42")
        XCTAssertNil(m[3])
        XCTAssertEqual(try LinearRegex("abc").captureCount, 0)
    }

    func testEmptyMatchPositions() throws {
        let s = "baaa"
        let m = try XCTUnwrap(try LinearRegex("a*").firstMatch(in: s))
        XCTAssertEqual(m[0], s.startIndex..<s.startIndex)
        let e = try XCTUnwrap(try LinearRegex("$").firstMatch(in: "ab\n"))
        XCTAssertEqual(try XCTUnwrap(e[0]).lowerBound.utf16Offset(in: "ab\n"), 2)
        let z = try XCTUnwrap(try LinearRegex(#"\z"#).firstMatch(in: "ab\n"))
        XCTAssertEqual(try XCTUnwrap(z[0]).lowerBound.utf16Offset(in: "ab\n"), 3)
        let b = try XCTUnwrap(try LinearRegex(#"\b"#).firstMatch(in: "  ab"))
        XCTAssertEqual(try XCTUnwrap(b[0]).lowerBound.utf16Offset(in: "  ab"), 2)
        XCTAssertTrue(try LinearRegex("").matches(""))
        XCTAssertTrue(try LinearRegex("^$").matches(""))
        XCTAssertFalse(try LinearRegex("^$").matches("x"))
    }

    func testSubstringAnchorsAtItsOwnBounds() throws {
        let base = "xx/api/v1yy"
        let start = base.index(base.startIndex, offsetBy: 2)
        let end = base.index(base.endIndex, offsetBy: -2)
        let sub = base[start..<end]                      // "/api/v1"
        let re = try LinearRegex(#"^/api/(v\d)$"#)
        let m = try XCTUnwrap(re.firstMatch(in: sub))
        XCTAssertEqual(m[0], start..<end)
        XCTAssertEqual(m[1].map { String(base[$0]) }, "v1")
        XCTAssertNil(re.firstMatch(in: base))
        XCTAssertTrue(re.matches(sub))
        XCTAssertFalse(re.matches(base))
    }

    func testUnicodeRangesMapToStringIndices() throws {
        let s = "Ünïcödé ☃ 日本"
        let re = try LinearRegex("(ï)(c.)d")
        let m = try XCTUnwrap(re.firstMatch(in: s))
        XCTAssertEqual(m.map { $0.map { String(s[$0]) } }, ["ïcöd", "ï", "cö"])
        let wide = try XCTUnwrap(try LinearRegex("☃ (..)$").firstMatch(in: s))
        XCTAssertEqual(wide[1].map { String(s[$0]) }, "日本")
        XCTAssertEqual(try LinearRegex("^.{12}$").firstMatch(in: s).map { $0.count }, 1)
    }

    func testUTF8OffsetsAndInvalidUTF8() throws {
        let bytes: [UInt8] = Array("xéé!".utf8)
        let accents = try LinearRegex("(é+)")
        let offsets = bytes.withUnsafeBufferPointer { accents.firstMatch(utf8: $0) }
        XCTAssertEqual(offsets?[0], 1..<5)
        XCTAssertEqual(offsets?[1], 1..<5)
        // Invalid sequences read as U+FFFD, one byte at a time; nothing traps.
        let invalid: [UInt8] = [0xFF, 0xC3, 0x28, 0xE2, 0x82]
        invalid.withUnsafeBufferPointer { buf in
            XCTAssertEqual((try? LinearRegex("^.{5}$"))?.firstMatch(utf8: buf)?[0], 0..<5)
            XCTAssertEqual((try? LinearRegex(#"\x{FFFD}\("#))?.firstMatch(utf8: buf)?[0], 1..<3)
            XCTAssertEqual((try? LinearRegex("[^a]+$"))?.matches(utf8: buf), true)
            XCTAssertEqual((try? LinearRegex("a"))?.matches(utf8: buf), false)
        }
        for pattern in ["^.+$", "(.)(.)", #"\b\w"#, "[^x]*", "(?i)[à-ÿ]"] {
            let re = try LinearRegex(pattern)
            for cut in 0...invalid.count {
                Array(invalid[0..<cut]).withUnsafeBufferPointer { buf in
                    _ = re.firstMatch(utf8: buf)
                    _ = re.matches(utf8: buf)
                }
            }
        }
        let empty: [UInt8] = []
        empty.withUnsafeBufferPointer { buf in
            XCTAssertEqual((try? LinearRegex("^$"))?.firstMatch(utf8: buf)?[0], 0..<0)
            XCTAssertEqual((try? LinearRegex("a"))?.matches(utf8: buf), false)
        }
    }

    func testRefusedConstructs() {
        let refused: [(String, String)] = [
            (#"(a)\1"#, "backreference"),
            (#"(?<n>a)\k<n>"#, "backreference"),
            (#"(a)\g1"#, "backreference"),
            (#"(?P<n>a)(?P=n)"#, "backreference"),
            ("a(?=b)", "lookahead"),
            ("a(?!b)", "lookahead"),
            ("(?<=a)b", "lookbehind"),
            ("(?<!a)b", "lookbehind"),
            ("(?>a+)b", "atomic"),
            ("a(?R)?b", "recursion"),
            ("(a)(?1)", "recursion"),
            ("(?&name)", "recursion"),
            ("(?P>name)", "recursion"),
            ("(?(1)a|b)", "conditional"),
            (#"\p{L}"#, #"\p"#),
            (#"\P{Lu}"#, #"\p"#),
            ("a*+", "possessive"),
            ("a++", "possessive"),
            ("a{2,3}+", "possessive"),
            ("(?|a|b)", "branch reset"),
            ("(*SKIP)a", "verb"),
            ("(?C1)a", "callout"),
            (#"a\Kb"#, #"\K"#),
            (#"\Ga"#, #"\G"#),
            (#"\R"#, #"\R"#),
            (#"\X"#, #"\X"#),
            (#"\C"#, #"\C"#),
            ("(?U)a+", "inline flag"),
            ("(?J)a", "inline flag"),
            ("a{1001}", "repetition count too large"),
            ("a{1,1001}", "repetition count too large"),
            ("(?:a{1000}){21}", "pattern too large"),
            ("a{3,2}", "out of order"),
            ("[z-a]", "out of order"),
            ("[a", "missing terminating ]"),
            ("(a", "missing closing parenthesis"),
            ("a)", "unmatched closing parenthesis"),
            ("*a", "quantifier does not follow a repeatable item"),
            ("a|+", "quantifier does not follow a repeatable item"),
            ("^*", "quantifier does not follow a repeatable item"),
            ("a**", "nested quantifier"),
            ("a{2}{3}", "nested quantifier"),
            (#"a\"#, "trailing backslash"),
            (#"\y"#, "unrecognized escape"),
            (#"[\y]"#, "unrecognized escape"),
            (#"[\d-z]"#, "invalid range"),
            (#"[a-\d]"#, "invalid range"),
            (#"[\B]"#, "not allowed in a character class"),
            ("[[:foo:]]", "unknown POSIX class"),
            ("[[.a.]]", "collating"),
            ("[:alpha:]", "only valid inside brackets"),
            (#"\x{110000}"#, "too large"),
            (#"\x{D800}"#, "surrogate"),
            (#"\xZ"#, "hexadecimal"),
            ("(?<n>a)(?<n>b)", "same name"),
            ("(?<1a>x)", "invalid character in group name"),
            (String(repeating: "(", count: 300) + String(repeating: ")", count: 300), "nested too deeply"),
        ]
        for (pattern, fragment) in refused {
            do {
                _ = try LinearRegex(pattern)
                XCTFail("\(pattern.debugDescription) should be refused (\(fragment))")
            } catch {
                XCTAssertTrue(error.message.contains(fragment), "\(pattern.debugDescription): \(error.message)")
                XCTAssertTrue(error.description.contains(error.message))
            }
        }
    }

    func testSyntaxErrorOffsets() {
        func offset(_ pattern: String) -> Int? {
            do { _ = try LinearRegex(pattern); return nil } catch { return error.offset }
        }
        XCTAssertEqual(offset("ab(?=c)"), 2)
        XCTAssertEqual(offset(#"abc\1"#), 3)
        XCTAssertEqual(offset("x[a"), 1)
        XCTAssertEqual(offset("xy*+"), 2)
        XCTAssertEqual(offset("é(?<=a)"), 1)
    }

    func testLimitsAllowLargeButBoundedPatterns() throws {
        XCTAssertTrue(try LinearRegex("^a{1000}$").matches(String(repeating: "a", count: 1000)))
        XCTAssertFalse(try LinearRegex("^a{1000}$").matches(String(repeating: "a", count: 999)))
        XCTAssertTrue(try LinearRegex("^(?:a{100}){100}$").matches(String(repeating: "a", count: 10_000)))
        let deep = String(repeating: "(?:", count: 150) + "a" + String(repeating: ")", count: 150)
        XCTAssertTrue(try LinearRegex(deep).matches("a"))
        let alternatives = (0..<2000).map { "w\($0)" }.joined(separator: "|")
        let re = try LinearRegex("^(?:\(alternatives))$")
        XCTAssertTrue(re.matches("w1999"))
        XCTAssertFalse(re.matches("w2000"))
    }

    /// Exponential for a backtracking engine; here linear in the input. No timing assertions:
    /// these finish at once here, and would not finish at all with backtracking.
    func testPathologicalPatternsComplete() throws {
        let a5000 = String(repeating: "a", count: 5000)
        let x5000 = String(repeating: "x", count: 5000)

        let nested = try LinearRegex("(a+)+$")
        XCTAssertNil(nested.firstMatch(in: a5000 + "!"))
        XCTAssertFalse(nested.matches(a5000 + "!"))
        check(nested, a5000, [a5000, a5000])

        let alternation = try LinearRegex("(a|a)*b")
        XCTAssertNil(alternation.firstMatch(in: a5000))
        XCTAssertFalse(alternation.matches(a5000))
        check(alternation, a5000 + "b", [a5000 + "b", "a"])

        let twoPlus = try LinearRegex("(x+x+)+y")
        XCTAssertNil(twoPlus.firstMatch(in: x5000))
        XCTAssertFalse(twoPlus.matches(x5000))
        check(twoPlus, x5000 + "y", [x5000 + "y", x5000])

        let words = String(repeating: "word ", count: 1000) + "!"
        check(try LinearRegex(#"^(\w+\s?)*$"#), words, nil)
        check(try LinearRegex("(.*a){12}"), String(repeating: "b", count: 5000), nil)
        check(try LinearRegex("^(a|aa)*$"), a5000 + "b", nil)
        check(try LinearRegex("(a*)*b"), a5000, nil)
        check(try LinearRegex(#"^(([a-z])+.)+[A-Z]([a-z])+$"#), String(repeating: "ab", count: 2500), nil)
    }

    func testFastPathsAreChosen() throws {
        XCTAssertNotNil(try LinearRegex("^/api/v1/users/[0-9]+$").dfa)
        XCTAssertNotNil(try LinearRegex(#"\.(php|jsp)$"#).dfa)
        XCTAssertNil(try LinearRegex(#"\bword\b"#).dfa)          // \b: Pike VM / backtracker
        XCTAssertTrue(try LinearRegex("^/api/").program.anchored)
        XCTAssertFalse(try LinearRegex("/api/").program.anchored)
    }

    func testSharedAcrossConcurrentTasks() async throws {
        let re = try LinearRegex(#"^/api/v(\d+)/(\w+)$"#)
        let ok = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<8 {
                group.addTask {
                    for j in 0..<200 {
                        let path = "/api/v\(i)/item\(j)"
                        guard let m = re.firstMatch(in: path), let g = m[1], path[g] == "\(i)" else { return false }
                        if re.matches("/api/v\(i)/") { return false }
                    }
                    return true
                }
            }
            var all = true
            for await r in group { all = all && r }
            return all
        }
        XCTAssertTrue(ok)
    }
}
