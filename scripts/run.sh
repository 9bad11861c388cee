#!/usr/bin/env bash
# The main job: send a paced SPEAD stream over the veth harness and report
# what the receiver saw. Brings up the harness (scripts/setup-veth.sh),
# attaches the XDP sink to the peer end, sends with spead-send, prints the
# sink's count, and takes the harness down again (also on failure).
#
#   scripts/run.sh [RATE_GBPS] [HEAPS] [HEAP_BYTES] [PACKET]
#                  defaults:  1 500 1048576 8192
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/rust-env.sh
. scripts/bpf-deps.sh
rate=${1:-1}
heaps=${2:-500}
heap_size=${3:-1048576}
packet=${4:-8192}
name=speadrun

if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh needs root (veth harness, XDP)" >&2
    exit 1
fi
cargo build --release --quiet --features sink --bin spead-send --bin spead-sink
trap 'scripts/setup-veth.sh down $name' EXIT
eval "$(scripts/setup-veth.sh up $name --mtu 9000)"
echo "== harness: $HOST_IF $HOST_IP -> $PEER_IF $PEER_IP (netns $NETNS), MTU $MTU"

sink_out=$(mktemp)
target/release/spead-sink --interface "$PEER_IF" --netns "$NETNS" --idle 1 --quiet >"$sink_out" &
sink=$!
until grep -q attached "$sink_out"; do
    kill -0 $sink 2>/dev/null || { cat "$sink_out"; exit 1; }
    sleep 0.1
done
echo "== sink attached; sending $heaps heaps of $heap_size bytes in $packet-byte packets at $rate Gb/s"
target/release/spead-send --quiet --rate "$rate" --heaps "$heaps" --heap-size "$heap_size" \
    --packet "$packet" --dtype u1 "$PEER_IP:7148"
wait $sink
echo "== the sink saw:"
grep total "$sink_out"
rm -f "$sink_out"
