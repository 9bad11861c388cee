"""The one-line monitoring pair, with astropix's signatures: a DAQ sends
datagrams to a multicast group without knowing who listens, and any
number of monitors join and leave the group without disturbing it.

    sender = MulticastSender(group="239.1.1.1", port=5007)
    sender.send_data(packet)          # raw bytes
    sender.send_heap(heap)            # a SPEAD heap (spead_xdp.send.Heap)

    receiver = MulticastReceiver(group="239.1.1.1", port=5007)
    data = receiver.receive()         # the next datagram
    heap = receiver.receive_heap()    # the next whole SPEAD heap

A group address (224.0.0.0/4) is joined (receivers) or sent to with a TTL
(senders); any other address is plain UDP, so the default 127.0.0.1 works
on one machine without multicast."""

import ipaddress
import socket
from typing import Any

from ._spead_xdp import PacketGenerator

DEFAULT_MAX_PACKET_SIZE = 65535


def _is_group(address):
    try:
        return ipaddress.IPv4Address(address).is_multicast
    except ValueError:
        return False


def _check(group, port):
    if not isinstance(group, str) or not group:
        raise ValueError(f"group must be an IPv4 address or host name, not {group!r}")
    if not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"port must be an int in 1..65535, not {port!r}")


class MulticastSocketBase:
    """A UDP socket for `group` and `port` (astropix's base class)."""

    def __init__(self, group: str = "127.0.0.1", port: int = 5007):
        _check(group, port)
        self.group = group
        self.port = port
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)

    def set_option(self, identifier: int, value: Any) -> None:
        """Sets a socket option at the IP level (``IPPROTO_IP``)."""
        self._socket.setsockopt(socket.IPPROTO_IP, identifier, value)

    def close(self) -> None:
        """Closes the socket (a receiver leaves its group)."""
        self._socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MulticastSender(MulticastSocketBase):
    """Sends datagrams to `group`:`port`; to a multicast group with `ttl`
    hops (1: this subnet; 2: the next one too)."""

    def __init__(self, group: str = "127.0.0.1", port: int = 5007, ttl: int = 2):
        super().__init__(group, port)
        if not isinstance(ttl, int) or not 0 <= ttl <= 255:
            raise ValueError(f"ttl must be an int in 0..255, not {ttl!r}")
        self.ttl = ttl
        if _is_group(group):
            self.set_option(socket.IP_MULTICAST_TTL, ttl)

    def send_data(self, data: bytes) -> int:
        """Sends one datagram; returns the bytes sent."""
        return self._socket.sendto(data, (self.group, self.port))

    def send_heap(self, heap, cnt: int = None, max_packet_size: int = 1472) -> int:
        """Sends a SPEAD heap (``spead_xdp.send.Heap``) as its packets, one
        datagram each, with heap cnt `cnt` (by default the next of this
        sender's sequence 1, 2, ...); returns the bytes sent."""
        if cnt is None:
            self._next_cnt = getattr(self, "_next_cnt", 0) + 1
            cnt = self._next_cnt
        return sum(self.send_data(packet) for packet in PacketGenerator(heap, cnt, max_packet_size))


class MulticastReceiver(MulticastSocketBase):
    """Receives the datagrams sent to `group`:`port`: joins the group
    (address reuse on, so any number of receivers can share it), or binds
    `group` as a plain address."""

    DEFAULT_MAX_PACKET_SIZE = DEFAULT_MAX_PACKET_SIZE

    def __init__(self, group: str = "127.0.0.1", port: int = 5007):
        super().__init__(group, port)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if _is_group(group):
            self._socket.bind(("", port))
            membership = socket.inet_aton(group) + socket.inet_aton("0.0.0.0")
            self.set_option(socket.IP_ADD_MEMBERSHIP, membership)
        else:
            self._socket.bind((group, port))
        self._heaps = None

    def receive(self, max_size: int = DEFAULT_MAX_PACKET_SIZE) -> bytes:
        """Waits for the next datagram and returns it (at most
        `max_size` bytes)."""
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive int, not {max_size!r}")
        return self._socket.recv(max_size)

    def receive_heap(self):
        """Waits for the next whole SPEAD heap (``spead_xdp.recv.Heap``);
        give its values to ``spead_xdp.ItemGroup.update``. The first call
        hands the socket to one of the library's reader threads, which
        reassembles heaps as datagrams come: use either ``receive`` or
        ``receive_heap`` on one receiver. A sender's end heap does not end
        the monitoring: the next call waits for the next stream."""
        from . import Stopped, recv

        while True:
            if self._heaps is None:
                self._heaps = recv.Stream(None)
                self._heaps.add_udp_reader(self._socket)
            try:
                return self._heaps.get()
            except Stopped:
                self._heaps.stop()
                self._heaps = None

    def close(self) -> None:
        if self._heaps is not None:
            self._heaps.stop()
        super().close()


__all__ = ["MulticastReceiver", "MulticastSender", "MulticastSocketBase"]
