import SluiceCore
import Testing

@Suite struct JSONTests {
    @Test func parsesAndSerializesDeterministically() throws {
        let text = #"{"b":[1,2.5,true,null,"x\"y"],"a":{"z":-3,"u":"\u00e9\ud83d\ude00"}}"#
        let value = try JSONValue.parse(text)
        #expect(value["a"]?["z"] == .int(-3))
        #expect(value["a"]?["u"] == .string("é😀"))
        #expect(value.serialized() == #"{"a":{"u":"é😀","z":-3},"b":[1,2.5,true,null,"x\"y"]}"#)
        #expect(try JSONValue.parse(value.serialized()) == value)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "\"\\x\"", "\"\u{01}\"", "tru", "{\"a\":1}x", "\"\\ud800\"",
    ])
    func rejectsMalformedText(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func rejectsDuplicateKeysAndDeepNesting() {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(#"{"a":1,"a":2}"#) }
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
    }

    @Test func mergePatchFollowsRFC7396() throws {
        let base = try JSONValue.parse(#"{"a":1,"b":{"c":2,"d":3},"e":[1]}"#)
        let patch = try JSONValue.parse(#"{"a":null,"b":{"c":9},"e":[2],"f":"new"}"#)
        #expect(base.mergePatched(with: patch) == (try JSONValue.parse(#"{"b":{"c":9,"d":3},"e":[2],"f":"new"}"#)))
    }
}

@Suite struct Base64Tests {
    @Test(arguments: [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("/apisix/routes/1", "L2FwaXNpeC9yb3V0ZXMvMQ==")])
    func roundTrips(_ plain: String, _ encoded: String) {
        #expect(Base64.encode(plain) == encoded)
        #expect(Base64.decode(encoded).map { String(decoding: $0, as: UTF8.self) } == plain)
    }

    @Test func refusesMalformedText() {
        #expect(Base64.decode("Zm9v!") == nil)
        #expect(Base64.decode("Zg==Zg") == nil)
    }
}
