"""spead2's ``Flavour``, subclassable as spead2's is."""

from ._spead_xdp import _Flavour

class Flavour(_Flavour):
    """A SPEAD flavour: ``Flavour()`` is spead2's default, 64-40;
    ``Flavour(4, 64, heap_address_bits, 0)`` another. The arguments are
    taken when the object is made; ``__init__`` accepts them again so that
    subclasses may call ``super().__init__(...)``, as with spead2's."""

    def __init__(self, *args, **kwargs):
        pass
