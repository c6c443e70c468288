#!/usr/bin/env bash
# The test command: checks for the services the tests start (etcd, Redis) and the clients
# they use (etcdctl, openssl, curl, python3 with cryptography), installs the missing ones when it can (root with
# apt-get) or stops at once with the exact command to run, then builds everything (the
# tests also run the `sluice` binary) and runs unit and integration tests. Integration tests
# use real sockets on 127.0.0.1 only, and start their own etcd and Redis servers.
#
# Tests run one at a time: several hold timing promises (timeouts, lease expiry, a slow
# reader) and start real servers, and on a 2-core machine running them all at once starves
# etcd and the gateways of CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

# command → Debian package that provides it
needs=(etcd:etcd-server etcdctl:etcd-client redis-server:redis-server openssl:openssl curl:curl)
missing_pkgs=()
for pair in "${needs[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing_pkgs+=("${pair#*:}")
done
if ((${#missing_pkgs[@]})); then
    install="apt-get update && apt-get install -y ${missing_pkgs[*]}"
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing what the tests need: ${missing_pkgs[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null || {
            echo "test.sh: could not install ${missing_pkgs[*]}; run: $install" >&2
            exit 1
        }
    else
        echo "test.sh: the tests need ${missing_pkgs[*]}, which are not installed. Run:" >&2
        echo "    sudo sh -c '$install'" >&2
        exit 1
    fi
fi
for pair in "${needs[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || { echo "test.sh: ${pair%%:*} is still missing (package ${pair#*:})" >&2; exit 1; }
done

# The TLS tests drive Python's ssl module as a client and make an expired test
# certificate with the cryptography package (OpenSSL 3.0's CLI cannot back-date one).
command -v python3 >/dev/null 2>&1 || { echo "test.sh: python3 is missing (Debian package python3)" >&2; exit 1; }
if ! python3 -c "import cryptography" 2>/dev/null; then
    echo "test.sh: installing the Python cryptography package for the TLS tests" >&2
    python3 -m pip install -q cryptography || { echo "test.sh: could not install it; run: python3 -m pip install cryptography" >&2; exit 1; }
fi

etcd --version | head -1
redis-server --version

swift build --build-tests
swift test --skip-build --no-parallel "$@"
