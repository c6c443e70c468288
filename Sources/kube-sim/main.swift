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

    func run() async throws {
        let parts = listen.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--listen must be HOST:PORT") }
        let server = try await SimHTTPServer.start(
            state: SimState(), host: String(parts[0]), port: port, group: MultiThreadedEventLoopGroup.singleton,
            bookmarkInterval: .seconds(Int64(bookmarkInterval)))
        let url = "http://\(parts[0]):\(server.port)"
        if let file = writeKubeconfig {
            let config = """
                apiVersion: v1
                kind: Config
                current-context: kube-sim
                clusters: [{name: kube-sim, cluster: {server: "\(url)"}}]
                users: [{name: kube-sim, user: {token: kube-sim}}]
                contexts: [{name: kube-sim, context: {cluster: kube-sim, user: kube-sim, namespace: default}}]
                """
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
