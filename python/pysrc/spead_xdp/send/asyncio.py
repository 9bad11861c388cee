"""spead2's ``spead2.send.asyncio``: streams whose sends return asyncio
futures. A heap is queued when ``async_send_heap`` is called (in call
order); its future is resolved on the event loop with the bytes sent, or
with the exception that failed it."""

import asyncio

from . import BytesStream as _BytesStream
from . import InprocStream as _InprocStream
from . import TcpStream as _TcpStream
from . import UdpStream as _UdpStream
from . import XdpStream as _XdpStream


class _AsyncStream:
    """The asyncio methods, over a native stream's ``_submit_heap`` and
    ``_submit_heaps``."""

    _last = None
    # Heaps queued and not yet completed (spead2's ``_active``).
    _active = 0

    def _settle(self, future, exception, sent):
        self._active -= 1
        if future.cancelled():
            return
        if exception is None:
            future.set_result(sent)
        else:
            future.set_exception(exception)

    def _queue(self, submit):
        loop = asyncio.get_event_loop()
        future = loop.create_future()

        def done(exception, sent):
            try:
                loop.call_soon_threadsafe(self._settle, future, exception, sent)
            except RuntimeError:
                # The loop has closed: no one can await the future now.
                pass

        try:
            submit(done)
        except OSError as refused:
            # Refused at once (a full queue, a bad substream): spead2 puts
            # it in the future. Settings errors (ValueError) are raised.
            future.set_exception(refused)
            return future
        self._active += 1
        self._last = future
        return future

    def async_send_heap(self, heap, cnt=-1, substream_index=0, rate=-1.0):
        """Queues `heap`; returns a future of the bytes sent."""
        return self._queue(lambda done: self._submit_heap(heap, cnt, substream_index, rate, done))

    def async_send_heaps(self, heaps, mode):
        """Queues a group of heaps (all or none); returns a future of the
        bytes sent."""
        return self._queue(lambda done: self._submit_heaps(heaps, mode, done))

    async def async_flush(self):
        """Waits until every heap queued so far has been sent (or failed);
        never raises."""
        last = self._last
        if last is not None:
            await asyncio.wait([last])


class UdpStream(_AsyncStream, _UdpStream):
    """spead2's ``send.asyncio.UdpStream``."""


class XdpStream(_AsyncStream, _XdpStream):
    """The AF_XDP stream with the asyncio methods (spead2's
    ``send.asyncio.UdpIbvStream`` counterpart)."""


class TcpStream(_AsyncStream, _TcpStream):
    """spead2's ``send.asyncio.TcpStream``: over a connected socket, or
    made with ``await TcpStream.connect(...)``."""

    @classmethod
    async def connect(cls, thread_pool, endpoints, config=None, buffer_size=_TcpStream.DEFAULT_BUFFER_SIZE,
                      interface_address=""):
        """Connects without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None, lambda: cls(thread_pool, endpoints, config, buffer_size, interface_address)
        )


class InprocStream(_AsyncStream, _InprocStream):
    """spead2's ``send.asyncio.InprocStream``."""


class BytesStream(_AsyncStream, _BytesStream):
    """A ``BytesStream`` with the asyncio methods (spead2 has none; handy in
    tests)."""


__all__ = ["UdpStream", "TcpStream", "XdpStream", "InprocStream", "BytesStream"]
