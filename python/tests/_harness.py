"""What the Python tests that need root share: the privilege check and a
veth harness of the test's own (scripts/setup-veth.sh), always taken down."""

import contextlib
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def privileged(test):
    """Goes on as root; skips where SPEAD_SKIP_PRIVILEGED=1; fails otherwise."""
    if os.geteuid() == 0:
        return
    if os.environ.get("SPEAD_SKIP_PRIVILEGED") == "1":
        pytest.skip(f"{test}: needs root (SPEAD_SKIP_PRIVILEGED=1)")
    pytest.fail(f"{test} needs root (veth, namespaces, AF_XDP); set SPEAD_SKIP_PRIVILEGED=1 to skip it")


@contextlib.contextmanager
def veth(prefix, subnet, mtu):
    """A veth harness named `prefix` and this process's id, on subnet
    10.200.`subnet`.0/24: yields its KEY=VALUE settings (NETNS, HOST_IF,
    HOST_IP, PEER_IF, PEER_IP, ...), and takes it down afterwards."""
    script = ROOT / "scripts" / "setup-veth.sh"
    name = f"{prefix}{os.getpid() % 10000}"
    up = subprocess.run(["bash", script, "up", name, "--subnet", str(subnet), "--mtu", str(mtu)],
                        capture_output=True, text=True, check=True)
    try:
        yield dict(line.split("=", 1) for line in up.stdout.split() if "=" in line)
    finally:
        subprocess.run(["bash", script, "down", name], capture_output=True)
