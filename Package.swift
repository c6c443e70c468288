// swift-tools-version:6.1
import PackageDescription

let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOPosix", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
    .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
]

let package = Package(
    name: "sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceCore", targets: ["SluiceCore"]),
        .library(name: "SluiceRouting", targets: ["SluiceRouting"]),
        .library(name: "SluiceBalancing", targets: ["SluiceBalancing"]),
        .library(name: "SluiceProxy", targets: ["SluiceProxy"]),
        .library(name: "SluiceServer", targets: ["SluiceServer"]),
        .library(name: "SluiceAdmin", targets: ["SluiceAdmin"]),
        .library(name: "SluiceStore", targets: ["SluiceStore"]),
        .library(name: "SluiceEtcd", targets: ["SluiceEtcd"]),
        .library(name: "SluiceTesting", targets: ["SluiceTesting"]),
        .library(name: "KubeClient", targets: ["KubeClient"]),
        .library(name: "SluiceHTTPClient", targets: ["SluiceHTTPClient"]),
        .library(name: "KubeSimServer", targets: ["KubeSimServer"]),
        .library(name: "SluiceIngress", targets: ["SluiceIngress"]),
        .library(name: "SluiceDiscovery", targets: ["SluiceDiscovery"]),
        .library(name: "SluiceTLS", targets: ["SluiceTLS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        // Config model, JSON, validation. No NIO.
        .target(name: "SluiceCore"),
        // Compiled route table. No NIO.
        .target(name: "SluiceRouting", dependencies: ["SluiceCore"]),
        // Node sets and pickers. No NIO.
        .target(name: "SluiceBalancing", dependencies: ["SluiceCore"]),
        // Plugins: the runtime (phases, chains, state that outlives snapshots) and the
        // built-in plugins. Uses NIOHTTP1's header and method types; no sockets.
        .target(name: "SluicePlugins", dependencies: [
            "SluiceCore", .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Crypto", package: "swift-crypto"), .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        .testTarget(name: "SluicePluginsTests", dependencies: ["SluicePlugins", "SluiceCore", .product(name: "NIOHTTP1", package: "swift-nio")]),
        // TLS material: ssls objects compiled into server and client contexts, the SNI
        // index, the ClientHello reader, the keyring for keys at rest.
        .target(name: "SluiceTLS", dependencies: [
            "SluiceCore", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Crypto", package: "swift-crypto"), .product(name: "_CryptoExtras", package: "swift-crypto"),
        ]),
        .testTarget(name: "SluiceTLSTests", dependencies: [
            "SluiceTLS", "SluiceCore", "SluiceTesting", .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        // Data plane: ChannelHandlers, pools, tunnels.
        .target(name: "SluiceProxy", dependencies: [
            "SluiceCore", "SluiceRouting", "SluiceBalancing", "SluicePlugins", "SluiceTLS",
            .product(name: "Logging", package: "swift-log"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
        ] + nio),
        // YAML documents as JSONValue (the declarative file, kubeconfig).
        .target(name: "SluiceYAML", dependencies: ["SluiceCore", .product(name: "Yams", package: "Yams")]),
        // Kubernetes API client: kubeconfig and in-cluster config, typed resources.
        // A small HTTP/1.1 client for control-plane APIs (Kubernetes).
        .target(name: "SluiceHTTPClient", dependencies: [.product(name: "NIOSSL", package: "swift-nio-ssl")] + nio),
        .target(name: "KubeClient", dependencies: ["SluiceCore", "SluiceYAML", "SluiceHTTPClient"] + nio),
        .testTarget(name: "KubeClientTests", dependencies: ["KubeClient", "SluiceCore"]),
        // discovery_type kubernetes: each gateway follows EndpointSlices into node sets.
        .target(name: "SluiceDiscovery", dependencies: ["SluiceCore", "KubeClient", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "SluiceDiscoveryTests", dependencies: [
            "SluiceDiscovery", "SluiceCore", "KubeClient", "KubeSim", "KubeSimServer", .product(name: "Logging", package: "swift-log"),
        ] + nio),
        // The Kubernetes API simulator's storage: objects, resourceVersions, watch history.
        .target(name: "KubeSim", dependencies: ["SluiceCore"]),
        .testTarget(name: "KubeSimTests", dependencies: ["KubeSim", "KubeSimServer", "KubeClient", "SluiceCore", "SluiceTesting"] + nio),
        .target(name: "KubeSimServer", dependencies: ["KubeSim", "SluiceCore", .product(name: "NIOSSL", package: "swift-nio-ssl")] + nio),
        .executableTarget(name: "kube-sim", dependencies: [
            "KubeSimServer", "KubeSim", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ] + nio),
        // The ingress controller: pure translators (APISIX CRDs, Ingress → gateway objects),
        // endpoint merging, the diff-and-write sync, leader election, status, metrics.
        .target(name: "SluiceIngress", dependencies: [
            "SluiceCore", "KubeClient", "SluiceHTTPClient", "SluiceStore",
            .product(name: "Logging", package: "swift-log"), .product(name: "Prometheus", package: "swift-prometheus"),
        ] + nio),
        .testTarget(name: "SluiceIngressTests", dependencies: ["SluiceIngress", "KubeClient", "SluiceCore", "SluiceTesting"]),
        // Listeners, snapshot publisher, config sources, lifecycle.
        .target(name: "SluiceServer", dependencies: [
            "SluiceCore", "SluiceProxy", "SluicePlugins", "SluiceAdmin", "SluiceStore", "SluiceEtcd", "SluiceYAML", "SluiceTLS", "SluiceBalancing",
            .product(name: "Logging", package: "swift-log"),
        ] + nio),
        // Config stores: the store protocol and the embedded durable store. No NIO.
        .target(name: "SluiceStore", dependencies: ["SluiceCore"]),
        // etcd v3 as the shared store, over its JSON gateway.
        .target(name: "SluiceEtcd", dependencies: ["SluiceCore", "SluiceStore", "SluiceHTTPClient"] + nio),
        // Admin API v3 and control API over a ConfigService. No NIO.
        .target(name: "SluiceAdmin", dependencies: ["SluiceCore", "SluiceStore"]),
        .executableTarget(name: "sluice", dependencies: [
            "SluiceServer", "SluiceProxy", "SluiceCore", "SluiceAdmin", "SluiceStore", "SluiceEtcd", "SluiceIngress", "SluiceDiscovery", "KubeClient",
            "SluiceTLS", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Test support: fake upstreams and a small HTTP client, on real sockets.
        .target(name: "SluiceTesting", dependencies: [
            "SluiceCore", .product(name: "NIOWebSocket", package: "swift-nio"),
        ] + nio),
        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore"]),
        .testTarget(name: "SluiceStoreTests", dependencies: ["SluiceStore", "SluiceCore"]),
        .testTarget(name: "SluiceEtcdTests", dependencies: ["SluiceEtcd", "SluiceStore", "SluiceCore", "SluiceTesting"] + nio),
        .testTarget(name: "SluiceRoutingTests", dependencies: ["SluiceRouting", "SluiceCore"]),
        .testTarget(name: "SluiceBalancingTests", dependencies: ["SluiceBalancing", "SluiceCore"]),
        .testTarget(name: "SluiceProxyTests", dependencies: [
            "SluiceProxy", "SluiceCore", "SluiceRouting", "SluiceTesting", .product(name: "NIOEmbedded", package: "swift-nio"),
        ] + nio, exclude: ["FuzzCorpus"]),
        .testTarget(name: "SluiceIntegrationTests", dependencies: [
            .product(name: "Crypto", package: "swift-crypto"), .product(name: "_CryptoExtras", package: "swift-crypto"),
            "SluiceServer", "SluiceYAML", "SluiceAdmin", "SluiceStore", "SluiceEtcd", "SluiceTesting", "SluiceCore", "SluiceProxy",
            "KubeClient", "KubeSimServer", "KubeSim", "SluiceIngress", "SluiceTLS", .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ] + nio),
    ]
)
