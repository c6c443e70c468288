#!/usr/bin/env bash
# Runs the gateway (release build) with the settings in conf/sluice.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
exec swift run -c release sluice serve "$@"
