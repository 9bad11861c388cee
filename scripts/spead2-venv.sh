# Sourced by run.sh and test.sh: makes sure python3 with venv support is
# installed (apt, on Debian) and that .venv holds spead2 from PyPI, then
# exports SPEAD2_PYTHON. The venv is created once and reused.
SPEAD2_VERSION=4.5.1

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "== installing python3 and venv support (apt)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi

if ! .venv/bin/python -c "import spead2, sys; sys.exit(spead2.__version__ != '$SPEAD2_VERSION')" >/dev/null 2>&1; then
    echo "== creating .venv with spead2 $SPEAD2_VERSION from PyPI" >&2
    rm -rf .venv
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check "spead2==$SPEAD2_VERSION" numpy
fi
# pytest for the Python package's tests (python/tests), and pytest-asyncio
# for spead2's own asyncio send tests (scripts/spead2-send-tests.sh).
if ! .venv/bin/python -c 'import pytest, pytest_asyncio' >/dev/null 2>&1; then
    echo "== installing pytest and pytest-asyncio into .venv" >&2
    .venv/bin/pip install --quiet --disable-pip-version-check pytest pytest-asyncio
fi
export SPEAD2_PYTHON="$PWD/.venv/bin/python"
