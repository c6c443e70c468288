// swift-tools-version:6.1
// Micro benchmarks (package-benchmark). A separate package so that CI's `swift test` does
// not build them. Run: cd Benchmarks && swift package benchmark
import PackageDescription

let package = Package(
    name: "SluiceBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "sluice", path: ".."),
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
    ])
