// swift-tools-version:6.1
// Micro benchmarks (package-benchmark). A separate package so that CI's `swift test` does
// not build them. Run: cd Benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "SluiceBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "sluice", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "SluiceBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceCore", package: "sluice"),
                .product(name: "SluiceRouting", package: "sluice"),
                .product(name: "SluiceBalancing", package: "sluice"),
                .product(name: "SluiceProxy", package: "sluice"),
            ],
            path: "Benchmarks/SluiceBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(
            name: "IngressLatency",
            dependencies: [
                .product(name: "SluiceCore", package: "sluice"),
                .product(name: "KubeClient", package: "sluice"),
                .product(name: "SluiceHTTPClient", package: "sluice"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/IngressLatency"),
        .executableTarget(
            name: "WriteToLive",
            dependencies: [
                .product(name: "SluiceCore", package: "sluice"),
                .product(name: "SluiceServer", package: "sluice"),
                .product(name: "SluiceAdmin", package: "sluice"),
                .product(name: "SluiceStore", package: "sluice"),
                .product(name: "SluiceTesting", package: "sluice"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/WriteToLive"),
        .executableTarget(
            name: "EtcdPropagation",
            dependencies: [
                .product(name: "SluiceCore", package: "sluice"),
                .product(name: "SluiceServer", package: "sluice"),
                .product(name: "SluiceAdmin", package: "sluice"),
                .product(name: "SluiceEtcd", package: "sluice"),
                .product(name: "SluiceTesting", package: "sluice"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/EtcdPropagation"),
        .executableTarget(
            name: "InformerLoad",
            dependencies: [
                .product(name: "SluiceCore", package: "sluice"),
                .product(name: "KubeClient", package: "sluice"),
                .product(name: "SluiceHTTPClient", package: "sluice"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/InformerLoad"),
    ])
