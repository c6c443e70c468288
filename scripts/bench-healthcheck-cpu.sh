#!/usr/bin/env bash
# bench-healthcheck-cpu.sh N WITH_CHECKS(1|0) SECONDS: CPU of a sluice with one upstream of N nodes
# (tcp or http checks at interval 1) against a nginx origin, and the probe rate achieved.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=$1; CHECKS=$2; SECS=${3:-30}; TYPE=${4:-http}
W=$(mktemp -d)
# The probe origin: nginx on port 18090 of every loopback address (127.0.x.y), 1 worker.
mkdir -p $W/o
cat > $W/o/nginx.conf <<NG
worker_processes 1; pid $W/o/nginx.pid; error_log $W/o/error.log; daemon on;
events { worker_connections 8192; }
http { access_log off; server { listen 18090 reuseport backlog=8192; location / { return 200 "ok\n"; } } }
NG
nginx -c $W/o/nginx.conf -p $W/o
sleep 0.5
python3 - "$N" "$CHECKS" "$TYPE" > $W/config.json <<'PY'
import json,sys
n=int(sys.argv[1]); checks=sys.argv[2]=="1"; t=sys.argv[3]
nodes=[{"host":f"127.0.{1+i//250}.{1+i%250}","port":18090,"weight":1} for i in range(n)]
u={"id":"big","nodes":nodes}
if checks: u["checks"]={"active":{"type":t,"http_path":"/","concurrency":512,"healthy":{"interval":1},"unhealthy":{"interval":1}}}
print(json.dumps({"upstreams":[u],"routes":[{"id":"r","uri":"/*","upstream_id":"big"}]}))
PY
"$ROOT/.build/release/sluice" serve --standalone $W/config.json --workers 2 --tls-listen off --proxy-listen 127.0.0.1:19080 \
  --admin-listen 127.0.0.1:19089 --control-listen 127.0.0.1:19090 --metrics-listen 127.0.0.1:19091 > $W/sluice.log 2>&1 &
PID=$!
sleep 6
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
probes() { curl -s 127.0.0.1:19091/apisix/prometheus/metrics | awk '/^sluice_healthcheck_probes_total/{print $2}'; }
c0=$(cpu); p0=$(probes); t0=$(date +%s.%N)
sleep $SECS
c1=$(cpu); p1=$(probes); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
healthy=$(curl -s 127.0.0.1:19091/apisix/prometheus/metrics | grep -c '^apisix_upstream_status.* 1$' || true)
python3 -c "
dt=$t1-$t0; cpu=($c1-$c0)/$hz
p0='${p0:-0}' or '0'; p1='${p1:-0}' or '0'
print(f'nodes=$N checks=$CHECKS type=$TYPE window={dt:.1f}s cpu={cpu:.2f}s ({cpu/dt*100:.1f}% of one core) probes/s={(float(p1)-float(p0))/dt:.0f} healthy_series=$healthy')
"
kill $PID; wait $PID 2>/dev/null || true
kill $(cat $W/o/nginx.pid) 2>/dev/null || true; rm -rf $W
