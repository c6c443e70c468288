import ArgumentParser
import Foundation
import Logging
import NIOCore
import SluiceCore
import SluiceServer
import SluiceTLS

@main
struct Sluice: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "An API gateway whose configuration is live, not reloaded.",
        subcommands: [Serve.self, IngressCommand.self, Validate.self, Version.self])

    /// CONTRACT: exit 2 for bad flags, unknown subcommands and bad config files.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print version and build information.")

    func run() {
        print("sluice \(SluiceVersion.string)")
        print("built with Swift \(SluiceVersion.swift), SwiftNIO")
    }
}

enum SluiceVersion {
    static let string = "0.1.0"
    #if swift(>=6.3)
    static let swift = "6.3"
    #elseif swift(>=6.0)
    static let swift = "6.x"
    #else
    static let swift = "5.x"
    #endif
}

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a declarative config file; print every error with its path.")

    @Argument(help: "The YAML or JSON file (the --standalone format).")
    var file: String

    @Option(name: .customLong("keyring"), help: "Keyring key (repeatable), to check private keys stored encrypted.")
    var keyring: [String] = []

    func run() throws {
        var ring: Keyring? = nil
        if !keyring.isEmpty {
            do throws(KeyringError) {
                ring = try Keyring(keys: keyring)
            } catch {
                FileHandle.standardError.write(Data("--keyring: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            FileHandle.standardError.write(Data("\(file): cannot read the file\n".utf8))
            throw ExitCode(2)
        }
        switch DeclarativeFile.load(String(decoding: data, as: UTF8.self), keyring: ring) {
        case .success(let state):
            print("\(file): ok (\(state.routes.count) routes, \(state.services.count) services, \(state.upstreams.count) upstreams)")
        case .failure(let errors):
            for e in errors.errors { print("\(file): \(e)") }
            throw ExitCode(2)
        }
    }
}
