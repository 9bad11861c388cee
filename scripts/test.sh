#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian
# machine (run as root), then runs formatting, lint and every test.
#
# - apt: python3 with venv support; clang, libelf, zlib and pkg-config for
#   the XDP sink (feature `sink`); iproute2 for the veth harness; if missing.
# - .venv/: a Python venv with spead2 from PyPI (for the interop tests),
#   created once and reused while it imports spead2.
# - cargo fmt --check, cargo clippy (all targets, warnings denied),
#   cargo test --all-features (unit, golden vectors, properties, spead2
#   interop, and as root the veth harness with the XDP sink);
# - the committed performance plot is what scripts/plot-throughput.py draws
#   from the committed runs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

. scripts/rust-env.sh
. scripts/spead2-venv.sh
. scripts/bpf-deps.sh

say "cargo fmt --check"
cargo fmt --check

say "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --quiet --all-targets --all-features -- -D warnings

say "cargo build (default features: the sender alone, no BPF)"
cargo build --quiet

say "cargo test --all-features"
cargo test --all-features -- --nocapture

say "bench/throughput.svg drawn from bench/throughput.csv"
plot=$(mktemp --suffix=.svg)
trap 'rm -f "$plot"' EXIT
python3 scripts/plot-throughput.py bench/throughput.csv "$plot" >/dev/null
cmp "$plot" bench/throughput.svg
