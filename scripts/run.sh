#!/usr/bin/env bash
# The main job, on loopback until the veth harness lands (issue 4): start
# spead2's receiver (from PyPI), send it a paced SPEAD stream with
# spead-send, and report what the receiver saw.
#
#   scripts/run.sh [RATE_GBPS] [HEAPS] [HEAP_BYTES]     defaults: 1 200 1048576
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/rust-env.sh
. scripts/spead2-venv.sh
rate=${1:-1}
heaps=${2:-200}
heap_size=${3:-1048576}

cargo build --release --quiet --bin spead-send
coproc RECEIVER { "$SPEAD2_PYTHON" tests/interop/recv_heaps.py 1472 60 --summary; }
# bash drops RECEIVER once the receiver exits: keep its output on fd 3.
exec 3<&"${RECEIVER[0]}"
read -r _ port <&3
echo "== spead2 receiver on 127.0.0.1:$port; sending $heaps heaps of $heap_size bytes at $rate Gb/s"
target/release/spead-send --rate "$rate" --heaps "$heaps" --heap-size "$heap_size" --dtype u1 "127.0.0.1:$port"
report=$(cat <&3)
"$SPEAD2_PYTHON" - "$report" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); h = r["heaps"]; s = r["stats"]
print(f"== spead2 received {h['heaps']} heaps ({h['complete']} complete), cnt {h['first_cnt']}..{h['last_cnt']}, "
      f"{h['payload_bytes']} payload bytes, {s['packets']} packets; "
      f"{s['incomplete_heaps_evicted'] + s['incomplete_heaps_flushed']} incomplete")
PY
