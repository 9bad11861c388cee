#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh Debian
# machine (run as root), then runs formatting, lint and every test.
#
# - apt: python3 with venv support, if missing.
# - .venv/: a Python venv with spead2 from PyPI (for the interop tests),
#   created once and reused while it imports spead2.
# - cargo fmt --check, cargo clippy (all targets, warnings denied),
#   cargo test (unit, golden vectors, properties, spead2 interop).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*" >&2; }

. scripts/rust-env.sh
. scripts/spead2-venv.sh

say "cargo fmt --check"
cargo fmt --check

say "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

say "cargo test"
cargo test -- --nocapture
