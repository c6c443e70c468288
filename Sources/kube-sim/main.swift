import ArgumentParser
import Dispatch
import Foundation
import KubeSim
import KubeSimServer
import NIOPosix

/// A Kubernetes API server simulator for tests and benchmarks.
@main
struct KubeSimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kube-sim",
        abstract: "A Kubernetes API simulator on loopback: discovery, list, watch, get, create, update, patch, delete.",
        discussion: """
            Serves until SIGTERM or SIGINT. Port 0 picks a free port; --write-kubeconfig writes a kubeconfig naming it.

            Scenarios (the simulated control plane keeps EndpointSlices and Endpoints as Kubernetes does):
              POST /sim/scale?namespace=NS&service=NAME&replicas=N[&port=8080]   pods behind a Service (created if new)
              POST /sim/rollout?namespace=NS&service=NAME[&batch=1]              replace every pod, batch at a time
            """)

    @Option(help: "HOST:PORT to listen on.")
    var listen = "127.0.0.1:0"

    @Option(name: .customLong("write-kubeconfig"), help: "Write a kubeconfig for this server to FILE.")
    var writeKubeconfig: String?

    @Option(name: .customLong("bookmark-interval"), help: "Seconds between watch bookmarks (default 60).")
    var bookmarkInterval = 60

    @Option(name: .customLong("tls-cert"), help: "Serve HTTPS with this certificate (PEM); needs --tls-key.")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "The private key (PEM) of --tls-cert.")
    var tlsKey: String?

    @Option(name: .customLong("client-ca"), help: "Require client certificates signed by this CA (PEM).")
    var clientCA: String?

    @Option(name: .customLong("token"), help: "Accept only this bearer token (repeatable); default: any request is accepted.")
    var tokens: [String] = []

    @Flag(name: .customLong("no-watch-list"), help: "Refuse sendInitialEvents watches (422), as a server without the WatchList feature.")
    var noWatchList = false

    func run() async throws {
        let parts = listen.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--listen must be HOST:PORT") }
        func read(_ path: String, _ flag: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(flag): cannot read \(path)") }
            return Array(data)
        }
        var tls: SimTLS? = nil
        switch (tlsCert, tlsKey) {
        case (let cert?, let key?):
            tls = SimTLS(certificatePEM: try read(cert, "--tls-cert"), keyPEM: try read(key, "--tls-key"), clientCAPEM: try clientCA.map { try read($0, "--client-ca") })
        case (nil, nil):
            if clientCA != nil { throw ValidationError("--client-ca needs --tls-cert and --tls-key") }
        default:
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        let state = SimState()
        state.acceptedTokens = Set(tokens)
        state.watchListEnabled = !noWatchList
        let server = try await SimHTTPServer.start(
            state: state, host: String(parts[0]), port: port, group: MultiThreadedEventLoopGroup.singleton,
            bookmarkInterval: .seconds(Int64(bookmarkInterval)), tls: tls)
        let url = "\(tls == nil ? "http" : "https")://\(parts[0]):\(server.port)"
        if let file = writeKubeconfig {
            // The kubeconfig trusts the server's own certificate (a self-signed one, or the
            // leaf of a chain whose CA the user adds) and sends the first accepted token.
            let ca = try tlsCert.map { Data(try read($0, "--tls-cert")).base64EncodedString() }
            let config = SimHTTPServer.kubeconfig(url: url, token: tokens.first ?? "kube-sim", certificateAuthorityData: ca)
            try config.write(toFile: file, atomically: true, encoding: .utf8)
        }
        FileHandle.standardOutput.write(Data("kube-sim listening on \(url)\n".utf8))
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            for sig in [SIGTERM, SIGINT] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .main)
                source.setEventHandler { c.resume() }
                source.resume()
                Retained.sources.append(source)
            }
        }
        await server.stop()
    }
}

enum Retained {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []
}
