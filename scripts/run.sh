#!/usr/bin/env bash
# The main job, as far as it exists today: packetize SPEAD heaps with the
# protocol layer, send them over UDP on loopback to spead2's own receiver
# (from PyPI), and report what it saw; then the reverse direction.
# spead-send and the veth harness replace this as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/rust-env.sh
. scripts/spead2-venv.sh
cargo test --test interop -- --nocapture --test-threads 1 2>&1 |
    grep -E 'decoded|test result' | sed -E 's/^test [a-z0-9_]+ \.\.\. //'
