#!/usr/bin/env bash
# libFuzzer run over SluiceCore (no dependencies, so swiftc builds it alone in about 1.5
# minutes): the JSON parser, the config decoders, the path normalizer and LinearRegex,
# with AddressSanitizer. The seed corpus is Tests/SluiceProxyTests/FuzzCorpus, prefixed with
# the target byte (see Fuzz/CoreFuzzer.swift). Usage: scripts/fuzz-core.sh [SECONDS]
# (default 300). Findings land in .build-fuzz/ as crash-* files.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
out=.build-fuzz
mkdir -p "$out/seeds" "$out/corpus"
swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name SluiceCore Sources/SluiceCore/*.swift Fuzz/CoreFuzzer.swift -o "$out/fuzz-core"
i=0
for f in Tests/SluiceProxyTests/FuzzCorpus/config/*.json; do
    for t in 0 1; do { printf "\\x0$t"; cat "$f"; } > "$out/seeds/c$i"; i=$((i + 1)); done
done
for f in Tests/SluiceProxyTests/FuzzCorpus/paths/*; do { printf '\x02'; cat "$f"; } > "$out/seeds/c$i"; i=$((i + 1)); done
for p in '^/api/(.*)$' '(a+)+$' '^https?://[a-z]+\.example\.com$' '(?i)^/Admin' '\.(php|jsp)$'; do
    printf '\x03%s\x01/api/aaaa!' "$p" > "$out/seeds/c$i"; i=$((i + 1))
done
# Leak detection is off: the only "leaks" are the plugin catalog's static schemas.
cd "$out" && ASAN_OPTIONS=detect_leaks=0 ./fuzz-core -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 -timeout=10 \
    -print_final_stats=1 corpus seeds
