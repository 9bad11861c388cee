"""spead2's ``spead2.recv.asyncio``: a receiving stream whose heaps are
awaited (``await stream.get()``, ``async for heap in stream``). Each wait
runs on the event loop's default executor, so the loop stays free; a
``get`` cancelled while waiting loses nothing (the next ``get`` takes the
heap it was waiting for). ``stop()`` the stream before leaving the loop:
it ends a wait under way."""

import asyncio

from . import Stopped
from . import Stream as _Stream


class Stream(_Stream):
    """``spead_xdp.recv.Stream`` with ``async get()`` and async iteration."""

    _waiting = None

    async def get(self):
        """The next heap; ``Stopped`` once the stream has ended."""
        if self._waiting is None:
            loop = asyncio.get_running_loop()
            self._waiting = loop.run_in_executor(None, self._native._get, None)
        # Shielded: a cancelled get leaves the wait (and its heap) to the
        # next one.
        try:
            heap = await asyncio.shield(self._waiting)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._waiting = None
            raise
        self._waiting = None
        return heap

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.get()
        except Stopped:
            raise StopAsyncIteration from None


__all__ = ["Stream"]
