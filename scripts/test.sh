#!/usr/bin/env bash
# The test command: builds everything (the tests also run the `sluice` binary) and runs
# unit and integration tests. Integration tests use real sockets on 127.0.0.1 only, and
# start their own etcd servers (apt-get install etcd-server etcd-client).
#
# Tests run one at a time: several hold timing promises (timeouts, lease expiry, a slow
# reader) and start real servers, and on a 2-core machine running them all at once starves
# etcd and the gateways of CPU. Serially the whole suite takes about 25 s here.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build --no-parallel "$@"
