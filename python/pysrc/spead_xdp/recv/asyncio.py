"""spead2's ``spead2.recv.asyncio``: a receiving stream whose heaps are
awaited (``await stream.get()``, ``async for heap in stream``). Each wait
runs on the event loop's default executor, so the loop stays free."""

import asyncio

from . import Stopped
from . import Stream as _Stream


class Stream(_Stream):
    """``spead_xdp.recv.Stream`` with ``async get()`` and async iteration."""

    async def get(self):
        """The next heap; ``Stopped`` once the stream has ended."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._native._get, None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.get()
        except Stopped:
            raise StopAsyncIteration from None


__all__ = ["Stream"]
