#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian
# machine (run as root), then runs formatting, lint and every test.
#
# - apt: python3 with venv support; clang, libelf, zlib and pkg-config for
#   the XDP sink (feature `sink`); iproute2 for the veth harness; if missing.
# - .venv/: a Python venv with spead2 from PyPI (for the interop tests),
#   created once and reused while it imports spead2.
# - cargo fmt --check, cargo clippy (all targets, warnings denied; and
#   python/, the Python package's native half),
#   cargo test --all-features (unit, golden vectors, properties, spead2
#   interop, and as root the veth harness with the XDP sink);
# - the Python package (python/) built into .venv with pip (maturin from
#   PyPI) and its pytest suite run against spead2 from PyPI; then spead2's
#   own send tests, from spead2's sdist on PyPI, with spead_xdp as spead2;
# - golden vectors made afresh by spead2 from PyPI (a seed of their own)
#   and checked, beside the committed ones;
# - the committed performance plot is what scripts/plot-throughput.py draws
#   from the committed runs;
# - the fuzz targets (fuzz/: decoder and reassembler, heap building) for
#   FUZZ_SECONDS each (default 30), from the committed corpora, with
#   cargo-fuzz from crates.io (stable toolchain, no sanitizer).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

. scripts/rust-env.sh
. scripts/spead2-venv.sh
. scripts/bpf-deps.sh

say "cargo fmt --check (the library, and the Python package's native half)"
cargo fmt --check
cargo fmt --check --manifest-path python/Cargo.toml

say "cargo clippy --all-targets --all-features -- -D warnings"
cargo clippy --quiet --all-targets --all-features -- -D warnings

say "cargo clippy of python/ (the Python package's native half) -- -D warnings"
cargo clippy --quiet --manifest-path python/Cargo.toml -- -D warnings

say "cargo build (default features: the sender alone, no BPF)"
cargo build --quiet

say "cargo test --all-features"
cargo test --all-features -- --nocapture

say "golden vectors made afresh by spead2 $SPEAD2_VERSION (scripts/make-vectors.py, seed 2), checked"
vectors=$(mktemp --suffix=.json)
"$SPEAD2_PYTHON" scripts/make-vectors.py "$vectors" --seed 2
SPEAD_VECTORS="$vectors" cargo test --quiet --all-features --test golden -- --nocapture
rm -f "$vectors"

say "the Python package: built into .venv (pip install ./python, maturin from PyPI), pytest against spead2 $SPEAD2_VERSION"
"$SPEAD2_PYTHON" -m pip install --quiet --disable-pip-version-check ./python
"$SPEAD2_PYTHON" -m pytest -q python/tests

say "spead2 $SPEAD2_VERSION's own send tests (from its PyPI sdist) against spead_xdp as spead2"
scripts/spead2-send-tests.sh

say "bench/throughput.svg drawn from bench/throughput.csv"
plot=$(mktemp --suffix=.svg)
trap 'rm -f "$plot"' EXIT
python3 scripts/plot-throughput.py bench/throughput.csv "$plot" >/dev/null
cmp "$plot" bench/throughput.svg

say "fuzzing: reassemble and build_heap, ${FUZZ_SECONDS:-30} s each"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --quiet --locked cargo-fuzz
fuzz_new=$(mktemp -d)
trap 'rm -f "$plot"; rm -rf "$fuzz_new"' EXIT
for target in reassemble build_heap; do
    mkdir -p "$fuzz_new/$target"
    # New inputs go to a scratch folder; the committed corpus is read only.
    if ! cargo fuzz run --sanitizer none --release "$target" "$fuzz_new/$target" "fuzz/corpus/$target" -- \
        -max_total_time="${FUZZ_SECONDS:-30}" -rss_limit_mb=2048 >"$fuzz_new/$target.log" 2>&1; then
        tail -60 "$fuzz_new/$target.log" >&2
        echo "fuzz target $target failed (its input is under fuzz/artifacts/$target)" >&2
        exit 1
    fi
    echo "fuzz $target: $(grep -E '^Done' "$fuzz_new/$target.log")"
done
