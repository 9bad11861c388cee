#!/usr/bin/env bash
# spead2's own send tests (tests/test_send.py and tests/test_send_asyncio.py
# of spead2 4.5.1) run against spead_xdp installed under spead2's module
# names. The tests are spead2's (LGPL), not copied here: they are read from
# spead2's source distribution on PyPI, pinned by its SHA-256, and kept
# under target/. Needs .venv with spead_xdp, pytest and pytest-asyncio
# (scripts/spead2-venv.sh, then pip install ./python).
#
# Left out, with the reason:
# - TestUdpIbvConfig: spead2's ibverbs stream, which spead-xdp replaces
#   with XdpStream/XdpConfig (AF_XDP) rather than imitating.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.5.1
SHA256=699f18f749f71875733b759038984628af8f6088042da77f34203f8d28046b1f
URL="https://files.pythonhosted.org/packages/0f/9b/7d5e7a10b5e02da231dd4815761d67eb2b64eddd24cdf1260c84ef35bf5d/spead2-$VERSION.tar.gz"
dir="target/spead2-$VERSION-tests"
python="${SPEAD2_PYTHON:-$PWD/.venv/bin/python}"

if [ ! -f "$dir/tests/test_send.py" ]; then
    mkdir -p "$dir"
    archive="$dir/spead2-$VERSION.tar.gz"
    curl --silent --show-error --fail --location --retry 3 -o "$archive" "$URL"
    echo "$SHA256  $archive" | sha256sum --check --quiet
    tar -xzf "$archive" -C "$dir" --strip-components=1 \
        "spead2-$VERSION/tests/__init__.py" "spead2-$VERSION/tests/conftest.py" \
        "spead2-$VERSION/tests/test_send.py" "spead2-$VERSION/tests/test_send_asyncio.py"
    rm -f "$archive"
fi

cd "$dir"
PYTHONPATH="$OLDPWD/python/tests/spead2_suite${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" -m pytest -q -p no:cacheprovider -p spead2_is_spead_xdp \
    -o asyncio_default_fixture_loop_scope=function \
    --deselect tests/test_send.py::TestUdpIbvConfig \
    tests/test_send.py tests/test_send_asyncio.py "$@"
