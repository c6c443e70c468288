import SluiceCore
import SluiceTLS
import Testing

/// The SNI index and the incremental certificate compiler, on certificates made once with
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500`.
@Suite struct SNIIndexTests {
    static let certA = """
-----BEGIN CERTIFICATE-----
MIIBfzCCASWgAwIBAgIUZCnTRqfkILNHMqZ8SiyoAzrZMmkwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJdW5pdC50ZXN0MCAXDTI2MTIwNDA0MDE0N1oYDzIxMjYxMTEw
MDQwMTQ3WjAUMRIwEAYDVQQDDAl1bml0LnRlc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAS2hHjKYngu49nOUWReMPezIKkcqCqj1LxxXbP1bT8QvLHtTodAimwT
FmATBME+XnIrHK5GEbOSSA5Y73cBIzWuo1MwUTAdBgNVHQ4EFgQUVwLFb4UV4rx0
UaFAJ7CwdmfH2i0wHwYDVR0jBBgwFoAUVwLFb4UV4rx0UaFAJ7CwdmfH2i0wDwYD
VR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEAyDLV9ZAtN1No+kVb/G40
7fc3cx6kyfBi3siens/cUrMCIAJdOe6iPlIvPGftne4E8z5DUZVbhupBwilxuc6/
4Wli
-----END CERTIFICATE-----
"""
    static let keyA = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjnnWo36dMYgVL+LZ
qE9aPcynhQUrPRq5L/qabdW9ZPihRANCAAS2hHjKYngu49nOUWReMPezIKkcqCqj
1LxxXbP1bT8QvLHtTodAimwTFmATBME+XnIrHK5GEbOSSA5Y73cBIzWu
-----END PRIVATE KEY-----
"""
    static let certB = """
-----BEGIN CERTIFICATE-----
MIIBgDCCASegAwIBAgIUZXg1RIpGTnFe9qsjbzZY3F9PhzcwCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKdW5pdDIudGVzdDAgFw0yNjEyMDQwNDAxNDdaGA8yMTI2MTEx
MDA0MDE0N1owFTETMBEGA1UEAwwKdW5pdDIudGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABHCrS1j4Ncp8MZjoPmOBl4sk7zvXcoSGeL4BKfSY4uHTo7CA6M7r
s4odwciIYlnE4HWffr5SihFlpuou+DifhyujUzBRMB0GA1UdDgQWBBSSv92NQYzR
yi3dv/RaY5bIv8tM4DAfBgNVHSMEGDAWgBSSv92NQYzRyi3dv/RaY5bIv8tM4DAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIBKnj8gMALBie5N/NFMl
LiGrcQTEW6wL6BdoS/xaM9uPAiAvy6XazlaXlpYQ4QTVY3mVGxmTT3iQKDPZEsrP
TsLb3Q==
-----END CERTIFICATE-----
"""
    static let keyB = """
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgkXjWJFLitgFSSAUY
l9wU9ZBoeGvgoGpqtf+2Lc41fi6hRANCAARwq0tY+DXKfDGY6D5jgZeLJO8713KE
hni+ASn0mOLh06OwgOjO67OKHcHIiGJZxOB1n36+UooRZabqLvg4n4cr
-----END PRIVATE KEY-----
"""

    static func object(_ snis: [String], cert: String = certA, key: String = keyA, status: Int = 1) -> SSLObject {
        var o = SSLObject()
        o.cert = cert
        o.key = key
        o.snis = snis
        o.status = status
        return o
    }

    @Test func exactThenOneLabelWildcard() {
        let compiler = TLSCompiler()
        let index = compiler.compile([
            "1": Self.object(["api.example.com", "*.example.com"]),
            "2": Self.object(["*.b.example.com"], cert: Self.certB, key: Self.keyB),
        ])
        #expect(index.lookup("api.example.com")?.id == "1")
        #expect(index.lookup("x.example.com")?.id == "1")
        #expect(index.lookup("y.b.example.com")?.id == "2")
        #expect(index.lookup("example.com") == nil)
        #expect(index.lookup("z.y.a.example.com") == nil)
        #expect(index.lookup("com") == nil)
        #expect(index.lookup("") == nil)
    }

    @Test func theSmallerIDWinsAConflict() {
        let compiler = TLSCompiler()
        let index = compiler.compile(["10": Self.object(["a.test"]), "9": Self.object(["a.test"]), "x": Self.object(["a.test"])])
        #expect(index.lookup("a.test")?.id == "9")
    }

    @Test func onlyChangedObjectsAreCompiled() throws {
        let compiler = TLSCompiler()
        var ssls = ["1": Self.object(["a.test"]), "2": Self.object(["b.test"], cert: Self.certB, key: Self.keyB)]
        let first = compiler.compile(ssls)
        let a1 = try #require(first.lookup("a.test"))
        let b1 = try #require(first.lookup("b.test"))
        // Nothing changed: the same index, the same identities.
        #expect(compiler.compile(ssls) === first)
        ssls["2"] = Self.object(["b.test", "c.test"], cert: Self.certB, key: Self.keyB)
        let second = compiler.compile(ssls, changed: ["2"])
        #expect(second.lookup("a.test") === a1, "an unchanged object keeps its contexts")
        #expect(second.lookup("b.test") !== b1)
        #expect(second.lookup("c.test")?.id == "2")
        // Disabled, then deleted.
        ssls["1"] = Self.object(["a.test"], status: 0)
        #expect(compiler.compile(ssls, changed: ["1"]).lookup("a.test") == nil)
        ssls["1"] = nil
        #expect(compiler.compile(ssls, changed: ["1"]).identities.count == 1)
    }

    @Test func anObjectThatDoesNotLoadIsReportedAndTheRestServe() {
        let compiler = TLSCompiler()
        // Stored by another writer with a key of another certificate.
        let index = compiler.compile(["bad": Self.object(["bad.test"], key: Self.keyB), "good": Self.object(["good.test"])])
        #expect(index.lookup("bad.test") == nil)
        #expect(index.lookup("good.test")?.id == "good")
        #expect(compiler.errors["bad"]?.path == "ssls[bad].key")
        // Fixed: served, and no longer reported.
        let fixed = compiler.compile(["bad": Self.object(["bad.test"]), "good": Self.object(["good.test"])], changed: ["bad"])
        #expect(fixed.lookup("bad.test")?.id == "bad")
        #expect(compiler.errors.isEmpty)
    }

    @Test func encryptedKeysNeedTheirKeyring() throws {
        let keyring = try Keyring(keys: ["qeddd145sfvddff3"])
        var o = Self.object(["e.test"])
        o.key = keyring.encrypt(Self.keyA)
        #expect(TLSCompiler(keyring: keyring).compile(["e": o]).lookup("e.test")?.id == "e")
        let without = TLSCompiler()
        #expect(without.compile(["e": o]).lookup("e.test") == nil)
        #expect(without.errors["e"]?.message.contains("keyring") == true)
    }

    @Test func snisAreNormalizedAndChecked() throws {
        #expect(try SSLObject.normalizedSNI("API.Example.COM.", path: "snis[0]") == "api.example.com")
        #expect(try SSLObject.normalizedSNI("*.Example.com", path: "snis[0]") == "*.example.com")
        for bad in ["", "*.", "a.*.com", "a b", "..", ".a.com", "a..b", "*"] {
            #expect(throws: ConfigError.self, "\(bad)") { try SSLObject.normalizedSNI(bad, path: "snis[0]") }
        }
    }
}
