#!/usr/bin/env bash
# Counts malloc calls per proxied request of a running gateway binary, with a perf uprobe
# on libc's malloc (root needed). Starts the bench origin (nginx, ../shared/bench/upstream.sh)
# and the given sluice binary with one route to it, warms up, then counts mallocs in the
# gateway process while wrk sends a bounded load (-c 64, 5 s). Prints mallocs per request.
# Usage: scripts/bench-mallocs.sh [SLUICE_BINARY] [extra serve flags...]
# (default .build/release/sluice). Compare two builds by running it once per binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-.build/release/sluice}
shift || true
bench=../shared/bench
command -v wrk >/dev/null || { echo "wrk not installed: apt-get install -y wrk" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf not installed" >&2; exit 1; }
libc=$(ldd "$bin" | awk '/libc.so.6/ {print $3}')
perf probe -q -x "$libc" malloc 2>/dev/null || true
dir=$(mktemp -d)
export BENCH_DIR=$dir
cleanup() {
    [ -n "${gw:-}" ] && kill "$gw" 2>/dev/null && wait "$gw" 2>/dev/null
    "$bench/stop.sh" "$dir" >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$bench/upstream.sh" 18080 >/dev/null
cat > "$dir/routes.json" <<'EOF'
{"routes":[{"id":"bench","uri":"/*","upstream":{"nodes":{"127.0.0.1:18080":1},"keepalive_pool":{"size":512}}}]}
EOF
"$bin" serve --standalone "$dir/routes.json" --workers 2 --proxy-listen 127.0.0.1:19080 --tls-listen off --admin-listen 127.0.0.1:0 \
    --control-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 "$@" > "$dir/gw.log" 2>&1 &
gw=$!
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:19080/get && break; sleep 0.1; done
wrk -t 1 -c 64 -d 2s http://127.0.0.1:19080/get > /dev/null
perf stat -x, -e probe_libc:malloc -p "$gw" -o "$dir/perf.txt" sh -c "wrk -t 1 -c 64 -d 5s http://127.0.0.1:19080/get > $dir/wrk.txt"
requests=$(awk '/requests in/ {print $1}' "$dir/wrk.txt")
mallocs=$(awk -F, '/probe_libc:malloc/ {print $1}' "$dir/perf.txt")
echo "binary=$bin requests=$requests mallocs=$mallocs per_request=$(python3 -c "print(round($mallocs/$requests, 1))")"
