#!/usr/bin/env bash
# The test command: builds everything (the tests also run the `sluice` binary) and runs
# unit and integration tests. Integration tests use real sockets on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build "$@"
