from typing import Sequence

from . import recv as recv
from . import send as send
from . import sock as sock
from ._items import Descriptor as Descriptor
from ._items import Item as Item
from ._items import ItemGroup as ItemGroup
from ._flavour import Flavour as Flavour
from ._spead_xdp import Empty as Empty
from ._spead_xdp import InprocQueue as InprocQueue
from ._spead_xdp import Stopped as Stopped
from ._spead_xdp import __version__ as __version__

NULL_ID: int
HEAP_CNT_ID: int
HEAP_LENGTH_ID: int
PAYLOAD_OFFSET_ID: int
PAYLOAD_LENGTH_ID: int
DESCRIPTOR_ID: int
STREAM_CTRL_ID: int
DESCRIPTOR_NAME_ID: int
DESCRIPTOR_DESCRIPTION_ID: int
DESCRIPTOR_SHAPE_ID: int
DESCRIPTOR_FORMAT_ID: int
DESCRIPTOR_ID_ID: int
DESCRIPTOR_DTYPE_ID: int
CTRL_STREAM_START: int
CTRL_DESCRIPTOR_REISSUE: int
CTRL_STREAM_STOP: int
CTRL_DESCRIPTOR_UPDATE: int
BUG_COMPAT_DESCRIPTOR_WIDTHS: int
BUG_COMPAT_SHAPE_BIT_1: int
BUG_COMPAT_SWAP_ENDIAN: int
BUG_COMPAT_PYSPEAD_0_5_2: int

class ThreadPool:
    threads: int
    affinity: list[int]
    def __init__(self, threads: int = 1, affinity: Sequence[int] = ...) -> None: ...
    def stop(self) -> None: ...

def install_as_spead2() -> None: ...
