#!/usr/bin/env bash
# libFuzzer run over the HTTP/1 request and response readers (Sources/SluiceProxy/HTTP1) with
# AddressSanitizer. They need NIOCore and the head types of Sources/SluiceProxy/Message, so a
# small package is laid out in .build-fuzz-http1/ (those sources copied, with the few they use
# and SluiceCore; swift-nio as the only dependency) and built with SwiftPM; the first build
# takes a few minutes. Each input is read
# whole and in pieces: a trap, or different events, is a finding (see Fuzz/HTTP1Fuzzer.swift).
# Usage: scripts/fuzz-http1.sh [SECONDS] (default 300). Findings land in .build-fuzz-http1/
# as crash-* files.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
out=.build-fuzz-http1
pkg=$out/pkg
mkdir -p "$pkg/Sources/HTTP1Fuzz" "$pkg/Sources/SluiceCore" "$out/seeds" "$out/corpus"
cat > "$pkg/Package.swift" <<'EOF'
// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "HTTP1Fuzz",
    dependencies: [.package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")],
    targets: [
        .target(name: "SluiceCore"),
        .executableTarget(name: "HTTP1Fuzz", dependencies: [
            "SluiceCore", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
    ]
)
EOF
rm -f "$pkg"/Sources/HTTP1Fuzz/*.swift "$pkg"/Sources/SluiceCore/*.swift
cp Sources/SluiceProxy/HTTP1/HTTP1{ReadError,RequestReader,ResponseReader,Scanning}.swift Sources/SluiceProxy/Message/*.swift \
    Fuzz/HTTP1Fuzzer.swift "$pkg/Sources/HTTP1Fuzz/"
cp Sources/SluiceCore/*.swift "$pkg/Sources/SluiceCore/"
swift build --package-path "$pkg" -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
bin=$(swift build --package-path "$pkg" -c debug -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --show-bin-path)/HTTP1Fuzz
i=0
seed() { printf '%b' "$1" > "$out/seeds/s$i"; i=$((i + 1)); }
seed '\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n'
seed '\x00POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.0\r\n\r\n'
seed '\x00POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a="b c"\r\nhello\r\n0\r\nT: 1\r\n\r\n'
seed '\x00\r\nGET http://a.example:80/x HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\nX:  v \r\n\r\n'
seed '\x00CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n'
seed '\x00POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n'
seed '\x01\x01HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n'
seed '\x01\x01HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n'
seed '\x01\x00HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n'
seed '\x01\x01HTTP/1.0 200 OK\r\n\r\nuntil the close'
seed '\x01\x01HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00'
# Leak detection is off: what the fuzzer keeps alive between runs is not a leak of the readers.
cd "$out" && ASAN_OPTIONS=detect_leaks=0 "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4096 -timeout=10 \
    -print_final_stats=1 corpus seeds
