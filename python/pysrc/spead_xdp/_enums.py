"""spead2's enumerations of ``spead2.send``, as ``enum.Enum`` as in
spead2 4.x."""

import enum


class RateMethod(enum.Enum):
    """How a stream paces: spead2 may use a NIC's rate limiter (``HW``);
    spead-xdp paces in software with every method (its pacing is by the
    TSC, smoother than the kernel's)."""

    SW = 0
    HW = 1
    AUTO = 2


class GroupMode(enum.Enum):
    """How the heaps of one ``send_heaps`` call are interleaved."""

    ROUND_ROBIN = 0
    SERIAL = 1
