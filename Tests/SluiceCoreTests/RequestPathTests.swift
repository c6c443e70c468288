import SluiceCore
import Testing

@Suite struct RequestPathTests {
    @Test(arguments: [
        ("/get", "/get", nil as String?),
        ("/a/b?x=1&y=2", "/a/b", "x=1&y=2"),
        ("/a//b///c", "/a/b/c", nil),
        ("/a/./b/../c", "/a/c", nil),
        ("/a/b/..", "/a/", nil),
        ("/%61%70%69/x", "/api/x", nil),
        ("/api/%2e%2e/admin", "/admin", nil),
        ("/a%2Fb", "/a%2Fb", nil),
        ("/a%2fb", "/a%2Fb", nil),
        ("/sp%20ace", "/sp%20ace", nil),
        ("/x#frag", "/x", nil),
    ])
    func normalizes(_ input: String, _ path: String, _ query: String?) throws {
        let result = try RequestPath.normalize(input).get()
        #expect(result.path == path)
        #expect(result.query == query)
    }

    @Test func absoluteFormYieldsAuthority() throws {
        let r = try RequestPath.normalize("http://Example.com:8080/a/../b?q").get()
        #expect(r.authority == "Example.com:8080")
        #expect(r.path == "/b")
        #expect(r.query == "q")
    }

    @Test(arguments: [
        ("/..", RequestPath.Failure.aboveRoot),
        ("/a/../../etc/passwd", .aboveRoot),
        ("/%2e%2e/x", .aboveRoot),
        ("/.%2E/x", .aboveRoot),
        ("/bad%zz", .badPercentEncoding),
        ("/bad%4", .badPercentEncoding),
        ("relative", .notOriginForm),
        ("ftp://x/", .notOriginForm),
    ])
    func refuses(_ input: String, _ failure: RequestPath.Failure) {
        #expect(throws: failure) { try RequestPath.normalize(input).get() }
    }
}

@Suite struct AddressTests {
    @Test func parsesAndMatchesIPv4() throws {
        let cidr = try #require(CIDR("10.1.0.0/16"))
        #expect(cidr.contains(try #require(IPAddress("10.1.255.3"))))
        #expect(!cidr.contains(try #require(IPAddress("10.2.0.1"))))
        #expect(try #require(CIDR("0.0.0.0/0")).contains(try #require(IPAddress("8.8.8.8"))))
        #expect(IPAddress("256.1.1.1") == nil)
        #expect(IPAddress("01.1.1.1") == nil)
        #expect(IPAddress("1.1.1") == nil)
    }

    @Test func parsesAndMatchesIPv6() throws {
        let cidr = try #require(CIDR("2001:db8::/32"))
        #expect(cidr.contains(try #require(IPAddress("2001:db8:ffff::1"))))
        #expect(!cidr.contains(try #require(IPAddress("2001:db9::1"))))
        #expect(try #require(IPAddress("[::1]")).description == "::1")
        #expect(try #require(IPAddress("fe80::1%eth0")).description == "fe80::1")
        #expect(try #require(IPAddress("::ffff:1.2.3.4")).description == "::ffff:102:304")
        #expect(IPAddress("1::2::3") == nil)
        // IPv4 and IPv6 never match each other.
        #expect(!(try #require(CIDR("::/0"))).contains(try #require(IPAddress("1.2.3.4"))))
    }
}

@Suite struct PercentDecodingTests {
    @Test func decodesEscapesAndPlus() {
        #expect(PercentDecoding.decode("a%20b+c") == "a b c")
        #expect(PercentDecoding.decode("a+b", plusAsSpace: false) == "a+b")
        #expect(PercentDecoding.decode("%E2%9C%93") == "✓")
        // Malformed escapes are kept as written.
        #expect(PercentDecoding.decode("100%") == "100%")
        #expect(PercentDecoding.decode("%zz%4") == "%zz%4")
        #expect(PercentDecoding.decode("plain") == "plain")
    }
}
