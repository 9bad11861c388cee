"""A pytest plugin (``-p spead2_is_spead_xdp``) that makes ``import spead2``
give spead_xdp, so that spead2's own send tests run against it
(scripts/spead2-send-tests.sh). Set ``SPEAD2_SUITE_REAL=1`` to run them
against spead2 itself instead, to check the harness."""

import os

if os.environ.get("SPEAD2_SUITE_REAL") != "1":
    import spead_xdp

    spead_xdp.install_as_spead2()
