# Sourced by run.sh and test.sh: puts cargo on PATH or says why not.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install a Rust toolchain (rustup) first" >&2
    exit 1
}
