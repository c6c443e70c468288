import Foundation
import SluiceTLS
import Testing

/// `data_encryption.keyring`: values APISIX (and `openssl enc`) wrote must decrypt here.
@Suite struct KeyringTests {
    // Keys from APISIX's own tests and config example.
    static let keyA = "qeddd145sfvddff3"
    static let keyB = "edd1c9f0985e76a2"
    static let keyLong = "qeddd145sfvddff3qeddd145sfvddff3"

    static let pem = """
        -----BEGIN PRIVATE KEY-----
        MC4CAQAwBQYDK2VwBCIEIDv1kgVbo3OxnZQ+cSf6BjDzNdnAKJR3RrOn8dFLtnXP
        -----END PRIVATE KEY-----

        """

    @Test func roundTrip() throws {
        let keyring = try Keyring(keys: [Self.keyB])
        let stored = keyring.encrypt(Self.pem)
        #expect(!stored.hasPrefix("---"))
        #expect(stored != Self.pem)
        #expect(keyring.decrypt(stored) == Self.pem)
        #expect(!keyring.isEmpty)
        #expect(keyring.decrypt(keyring.encrypt("")) == "")
    }

    /// Fixed vectors: the IV is the key, so encryption is deterministic and must match
    /// byte for byte what APISIX and OpenSSL produce.
    @Test func matchesAPISIXAndOpenSSL() throws {
        // APISIX t/node/data_encrypt.t (TEST 9) stores "auth-two" under keyring edd1c9f0985e76a2
        // as this value; also
        //   printf '%s' auth-two | openssl enc -aes-128-cbc -K <hex(key)> -iv <hex(key)> -base64 -A
        let b = try Keyring(keys: [Self.keyB])
        #expect(b.decrypt("vU/ZHVJw7b0XscDJ1Fhtig==") == "auth-two")
        #expect(b.encrypt("auth-two") == "vU/ZHVJw7b0XscDJ1Fhtig==")

        // printf '%s' "$PEM" | openssl enc -aes-128-cbc -K <hex(keyB)> -iv <hex(keyB)> -base64 -A
        let pemByOpenSSL = "YnwwDKc5vNzo0OU4StTRQSQ5kK6XRAkpSTk0e4k8g2ezuDos+MLGaXLdxyAV5UfVR+vjIF1FKVtLeCtgduaEsPpOlp4ds2bBnHYWVyIq6Rzt741IeY6iTuKi/VMMZa5lfw/ebbSxXx9AfI40D1CYzLQqS/Nes2JDdf+DAGfDZzY="
        #expect(b.decrypt(pemByOpenSSL) == Self.pem)
        #expect(b.encrypt(Self.pem) == pemByOpenSSL)

        // printf '%s' 'hello world' | openssl enc -aes-128-cbc -K <hex(keyA)> -iv <hex(keyA)> -base64 -A
        let a = try Keyring(keys: [Self.keyA])
        #expect(a.decrypt("26cK4cS8EQ5UxEUdZYVPSg==") == "hello world")

        // A 32-byte key is AES-256 with the key's first 16 bytes as IV (APISIX 3.18):
        // printf '%s' 'hello world' | openssl enc -aes-256-cbc -K <hex(keyLong)> -iv <hex(keyLong[0..<16])> -base64 -A
        let long = try Keyring(keys: [Self.keyLong])
        #expect(long.decrypt("ls4DOizUshA64GOrnhVRQw==") == "hello world")
        #expect(long.encrypt("hello world") == "ls4DOizUshA64GOrnhVRQw==")
    }

    /// The same, live against the openssl CLI when the machine has one.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func matchesLiveOpenSSL() throws {
        for (key, cipher, iv) in [(Self.keyB, "-aes-128-cbc", Self.keyB), (Self.keyLong, "-aes-256-cbc", Self.keyA)] {
            let expected = try openssl(["enc", cipher, "-K", hex(key), "-iv", hex(iv), "-base64", "-A"], input: Self.pem)
            let keyring = try Keyring(keys: [key])
            #expect(keyring.encrypt(Self.pem) == expected)
            #expect(keyring.decrypt(expected) == Self.pem)
        }
    }

    @Test func rotation() throws {
        let storedWithB = try Keyring(keys: [Self.keyB]).encrypt(Self.pem)
        let rotated = try Keyring(keys: [Self.keyA, Self.keyB])
        #expect(rotated.decrypt(storedWithB) == Self.pem)
        #expect(rotated.encrypt(Self.pem) == (try Keyring(keys: [Self.keyA])).encrypt(Self.pem))
        #expect(rotated.encrypt(Self.pem) != storedWithB)
        // AES-128 data stays readable behind a new AES-256 key.
        let upgraded = try Keyring(keys: [Self.keyLong, Self.keyB])
        #expect(upgraded.decrypt(storedWithB) == Self.pem)
        #expect(upgraded.decrypt(upgraded.encrypt(Self.pem)) == Self.pem)
    }

    @Test func wrongKeyringOrGarbageIsNil() throws {
        let storedWithB = try Keyring(keys: [Self.keyB]).encrypt(Self.pem)
        let a = try Keyring(keys: [Self.keyA])
        #expect(a.decrypt(storedWithB) == nil)
        #expect(a.decrypt("vU/ZHVJw7b0XscDJ1Fhtig==") == nil)
        #expect(a.decrypt("not base64 !") == nil)
        #expect(a.decrypt("") == nil)
        #expect(a.decrypt("AAAA") == nil)  // 3 bytes: not whole AES blocks
        #expect(a.decrypt(String(repeating: "A", count: Keyring.maxStoredBytes + 4)) == nil)
        // 32 spaces encrypted without padding: the last byte claims 32 bytes of padding, more
        // than a block, which OpenSSL (and so APISIX) refuses:
        //   printf '%32s' '' | openssl enc -aes-128-cbc -nopad -K <hex(keyB)> -iv <hex(keyB)> -base64 -A
        #expect(try Keyring(keys: [Self.keyB]).decrypt("N9dhRkDTiaxmp6OCbT624ZRSWJpmRJsqVEvlanFuEVo=") == nil)
    }

    @Test func plainPEMPassesThrough() throws {
        let keyring = try Keyring(keys: [Self.keyA])
        #expect(keyring.decrypt(Self.pem) == Self.pem)
        #expect(Keyring.decryptWithoutKeyring(Self.pem) == Self.pem)
        #expect(Keyring.decryptWithoutKeyring(keyring.encrypt(Self.pem)) == nil)
        #expect(Keyring.decryptWithoutKeyring("") == nil)
    }

    @Test func badKeysAreNamedByIndexOnly() {
        let secret = "short-secret-key-20b"
        do {
            _ = try Keyring(keys: [Self.keyA, secret])
            Issue.record("a 20-byte key was accepted")
        } catch {
            #expect(error.description.contains("[1]"))
            #expect(error.description.contains("20 bytes"))
            #expect(!error.description.contains(secret))
            #expect(!error.description.contains(Self.keyA))
        }
        #expect(throws: KeyringError.self) { try Keyring(keys: []) }
        #expect(throws: KeyringError.self) { try Keyring(keys: [""]) }
        #expect(throws: KeyringError.self) { try Keyring(keys: [String(repeating: "k", count: 24)]) }  // AES-192: APISIX refuses it
        #expect(throws: KeyringError.self) { try Keyring(keys: ["ééééééééé"]) }  // 9 characters but 18 bytes
    }

    func hex(_ text: String) -> String {
        text.utf8.map { String(format: "%02x", $0) }.joined()
    }

    func openssl(_ arguments: [String], input: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
