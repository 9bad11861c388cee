"""spead2's item model over numpy: ``Descriptor`` (what an item is),
``Item`` (a descriptor with a value and a version) and the sender's
``ItemGroup`` with its heap generator. Written for spead_xdp; the bytes
they put in heaps are spead2's (tested against spead2 from PyPI)."""

import logging
import numbers

import numpy as np

from ._flavour import Flavour

_logger = logging.getLogger("spead_xdp")


def _shape_of(shape):
    dims = []
    for d in shape:
        if d is None or d < 0:
            dims.append(None)
        else:
            dims.append(int(d))
    if dims.count(None) > 1:
        raise ValueError("Cannot have multiple unknown dimensions")
    return tuple(dims)


def _format_of(format):
    fields = [(str(code), int(bits)) for code, bits in format]
    if not fields:
        raise ValueError("empty format")
    for code, bits in fields:
        if bits == 0:
            raise ValueError("zero-length field (bug_compat mismatch?)")
        if bits < 0:
            raise ValueError("negative-length field")
        # spead2's rule: u, i and b of any width; f of 32 or 64; c of 8.
        if code not in "uifbc" or (code == "f" and bits not in (32, 64)) or (code == "c" and bits != 8):
            raise ValueError(f"illegal format ({code!r}, {bits})")
    return fields


class Descriptor:
    """An item's id, name, description, shape and layout: a numpy ``dtype``
    (with ``order`` 'C' or 'F') or a SPEAD ``format`` list of
    ``(code, bits)``."""

    def __init__(self, id, name, description, shape, dtype=None, order="C", format=None):
        if dtype is not None and format is not None:
            raise ValueError("Only one of dtype and format can be specified")
        if dtype is None and format is None:
            raise ValueError("One of dtype and format must be specified")
        if order not in ("C", "F"):
            raise ValueError("Order must be 'C' or 'F'")
        self.id = id
        self.name = name
        self.description = description
        self.shape = _shape_of(shape)
        self.order = order
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.hasobject:
                raise ValueError("Cannot use dtype that has reference-counted objects")
            if dtype.itemsize == 0:
                raise ValueError("Cannot use zero-sized dtype")
            if None in self.shape:
                raise ValueError("Cannot have unknown dimensions when using numpy descriptor")
            self.dtype, self.format = dtype, None
        else:
            if order != "C":
                raise ValueError("When specifying format, order must be 'C'")
            self.dtype, self.format = None, _format_of(format)

    @property
    def itemsize_bits(self):
        """Bits per element."""
        if self.dtype is not None:
            return self.dtype.itemsize * 8
        return sum(bits for _, bits in self.format)

    def is_variable_size(self):
        """Whether a dimension is unknown until a value is given."""
        return None in self.shape

    def allow_immediate(self):
        """Whether a short value may travel inline in its item pointer."""
        return not self.is_variable_size() and (self.dtype is not None or self.itemsize_bits % 8 == 0)


def _check_range(value, code, bits):
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code == "i" else (0, (1 << bits) - 1)
    if code == "b":
        low, high = 0, 1
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range for {code}{bits}")


def _pack_bits(values, fields):
    """Elements of a format item, each field's bits in turn, most
    significant first, the end padded to a byte."""
    bits_total = len(values) * sum(bits for _, bits in fields)
    out = bytearray((bits_total + 7) // 8)
    at = 0
    for element in values:
        element = element if isinstance(element, (tuple, list)) else (element,)
        for (code, bits), value in zip(fields, element):
            if code == "f":
                raw = int.from_bytes(np.array(value, dtype=">f%d" % (bits // 8)).tobytes(), "big")
            elif code == "c":
                raw = value[0] if isinstance(value, (bytes, bytearray)) else ord(value)
            elif code == "b":
                raw = 1 if value else 0
            else:
                raw = int(value)
                _check_range(raw, code, bits)
                raw &= (1 << bits) - 1
            for k in range(bits - 1, -1, -1):
                if (raw >> k) & 1:
                    out[at // 8] |= 0x80 >> (at % 8)
                at += 1
    return out


class Item(Descriptor):
    """A descriptor with a value. Each value set raises ``version``."""

    def __init__(self, *args, value=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._value = value
        self.version = 1

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, new):
        if new is None:
            raise ValueError("Item value cannot be set to None")
        self._value = new
        self.version += 1

    def _expect_shape(self, shape):
        fixed = all(d is not None for d in self.shape)
        if (fixed and tuple(shape) != self.shape) or len(shape) != len(self.shape):
            raise ValueError(f"Value has shape {tuple(shape)}, expected {self.shape}")

    @classmethod
    def from_raw(cls, raw, flavour=None):
        """An item (no value yet) from a received descriptor (`flavour` is
        accepted for spead2's signature: only 64-bit pointers here)."""
        return cls(**_descriptor_args(raw))

    def _dynamic_shape(self, max_elements):
        """The shape with its variable dimension (if any) as large as
        `max_elements` allows."""
        known = 1
        for d in self.shape:
            known *= d if d is not None else 1
        return tuple(d if d is not None else (max_elements // known if known else 0) for d in self.shape)

    def set_from_raw(self, raw_item, new_order="="):
        """Sets the value from a received item, as spead2 decodes it: a
        numpy dtype, or a format list whose fields numpy has, by view (an
        immediate's bytes at its end), in byte order `new_order`; a single
        integer field of a scalar immediate as that integer; other formats
        bit by bit."""
        data = raw_item.value
        numpy_dtype = self.dtype if self.dtype is not None else _internal_dtype(self.format)
        if not numpy_dtype.hasobject:
            value = self._from_bytes(data, raw_item.is_immediate, numpy_dtype, new_order)
            if self.format == [("c", 8)] and len(self.shape) == 1:
                value = b"".join(value.tolist()).decode("ascii")
        elif (raw_item.is_immediate and not self.shape and len(self.format) == 1
              and self.format[0][0] in "ui" and len(data) * 8 == self.format[0][1]):
            code, bits = self.format[0]
            value = raw_item.immediate_value
            if code == "i" and value >= 1 << (bits - 1):
                value -= 1 << bits
        else:
            bits_each = self.itemsize_bits
            shape, count = self._elements_in(len(data) * 8 // bits_each)
            if raw_item.is_immediate:
                data = data[len(data) - (count * bits_each + 7) // 8:]
            flat = _unpack_bits(data, count, self.format)
            value = np.array(_nest(flat, shape), dtype=numpy_dtype)
        if isinstance(value, np.ndarray) and len(self.shape) == 0:
            value = value[()]
        self.value = value

    def _elements_in(self, available):
        """The shape (its variable dimension as large as `available`
        elements allow) and its element count; a ValueError when there are
        too few."""
        shape = self._dynamic_shape(available)
        count = 1
        for d in shape:
            count *= d
        if count > available:
            raise ValueError(f"Item {self.name} has too few elements for shape ({available} < {count})")
        return shape, count

    def _from_bytes(self, data, is_immediate, dtype, new_order):
        """The value viewed from `data` as `dtype` (an immediate's bytes
        are at its end), in byte order `new_order`."""
        shape, count = self._elements_in(len(data) // dtype.itemsize)
        size = count * dtype.itemsize
        raw = data[len(data) - size:] if is_immediate else data[:size]
        array = np.frombuffer(raw, dtype=dtype)
        if dtype.names is None:
            array = array.astype(dtype.newbyteorder(new_order), casting="equiv")
        else:
            array = array.copy()
        return array.reshape(shape, order=self.order)

    def to_buffer(self):
        """The value's bytes as they go in a heap."""
        if self._value is None:
            raise ValueError("Cannot send a value of None")
        if self.dtype is not None:
            array = np.asarray(self._value, dtype=self.dtype, order=self.order)
            self._expect_shape(array.shape)
            return array.reshape(-1, order=self.order).view(np.uint8)
        if len(self.format) == 1 and self.format[0][0] in "ui" and self.format[0][1] % 8 == 0:
            code, bits = self.format[0]
            wide = ">u8" if code == "u" else ">i8"
            if bits <= 64 and self.shape == ():
                # A 0-d big-endian 64-bit array (a timestamp) is referred to,
                # not copied: changed in place, the next send carries it.
                array = np.asarray(self._value, dtype=wide)
                self._expect_shape(array.shape)
                _check_range(int(array), code, bits)
                return array.reshape(1).view(np.uint8)[8 - bits // 8 :]
            array = np.asarray(self._value)
            self._expect_shape(array.shape)
            for v in array.reshape(-1):
                _check_range(int(v), code, bits)
            return b"".join(
                int(v).to_bytes(bits // 8, "big", signed=code == "i") for v in array.reshape(-1)
            )
        if self.format == [("c", 8)]:
            raw = self._value.encode() if isinstance(self._value, str) else bytes(self._value)
            self._expect_shape((len(raw),))
            return raw
        value = self._value
        if len(self.shape) == 0 and isinstance(value, np.ndarray):
            value = value[()]
        self._expect_shape(_nested_shape(value, len(self.shape)))
        return bytes(_pack_bits(_elements(value, len(self.shape)), self.format))


def _descriptor_args(raw):
    """The constructor arguments of a received descriptor (spead2's
    RawDescriptor: shape with -1 for a variable dimension, a format list
    or a numpy header)."""
    import ast

    shape = tuple(None if d < 0 else d for d in raw.shape)
    if raw.numpy_header:
        try:
            header = ast.literal_eval(raw.numpy_header)
            order = "F" if header["fortran_order"] else "C"
            dtype, header_shape = np.dtype(header["descr"]), tuple(header["shape"])
        except (ValueError, SyntaxError, KeyError, TypeError) as error:
            raise ValueError(f"bad numpy header {raw.numpy_header!r} for item {raw.id:#x}") from error
        return dict(id=raw.id, name=raw.name, description=raw.description,
                    shape=header_shape, dtype=dtype, order=order)
    return dict(id=raw.id, name=raw.name, description=raw.description, shape=shape,
                format=[(code, bits) for code, bits in raw.format])


def _unpack_bits(data, count, fields):
    """`count` elements of a format item from `data`, each field's bits
    in turn, most significant first: scalars, or tuples for several
    fields. One pass: each field is read from the few bytes it spans."""
    at = 0
    out = []
    for _ in range(count):
        element = []
        for code, bits in fields:
            first, last = at // 8, (at + bits + 7) // 8
            span = int.from_bytes(data[first:last], "big")
            raw = (span >> ((last - first) * 8 - (at - first * 8) - bits)) & ((1 << bits) - 1)
            at += bits
            if code == "i" and raw >= 1 << (bits - 1):
                raw -= 1 << bits
            if code == "f":
                raw = float(np.frombuffer(raw.to_bytes(bits // 8, "big"), dtype=f">f{bits // 8}")[0])
            elif code == "b":
                raw = bool(raw)
            elif code == "c":
                raw = bytes([raw])
            element.append(raw)
        out.append(element[0] if len(fields) == 1 else tuple(element))
    return out


def _internal_dtype(fields):
    """The numpy dtype spead2 decodes a format list into: whole-byte
    integers and floats big-endian, an 8-bit bool, a char; anything else
    an object."""
    parts = []
    for code, bits in fields:
        if (code in "ui" and bits in (8, 16, 32, 64)) or (code == "f" and bits in (32, 64)):
            parts.append(f">{code}{bits // 8}")
        elif code == "b" and bits == 8:
            parts.append("?")
        elif code == "c" and bits == 8:
            parts.append("S1")
        else:
            parts.append("O")
    return np.dtype(",".join(parts))


def _nest(flat, shape):
    """`flat` as nested lists of `shape`."""
    if not shape:
        return flat[0]
    step = len(flat) // shape[0] if shape[0] else 0
    return [_nest(flat[k * step:(k + 1) * step], shape[1:]) for k in range(shape[0])]


def _same_descriptor(a, b):
    return (a.name, a.description, a.shape, a.dtype, a.order, a.format) == (
        b.name, b.description, b.shape, b.dtype, b.order, b.format)


def _nested_shape(value, dims):
    """The shape of the first `dims` levels of nested sequences."""
    shape = []
    for _ in range(dims):
        shape.append(len(value))
        if len(value) == 0:
            shape.extend([0] * (dims - len(shape)))
            break
        value = value[0]
    return tuple(shape)


def _elements(value, dims):
    """The elements (scalars, or tuples of a multi-field format) of `dims`
    levels of nested sequences, in order."""
    if dims == 0:
        return [value]
    out = []
    for sub in value:
        out.extend(_elements(sub, dims - 1))
    return out


class ItemGroup:
    """Items by id and by name, in the order added."""

    def __init__(self):
        self._by_id = {}
        self._by_name = {}

    def _add(self, item):
        old = self._by_id.get(item.id)
        if old is not None and _same_descriptor(old, item):
            # spead2: the same descriptor again only passes its value on
            # (none: a descriptor alone); the group keeps its item, and
            # returns the new one, as spead2's does.
            if item.value is not None:
                old.value = item.value
            return item
        for old in (self._by_id.get(item.id), self._by_name.get(item.name)):
            if old is not None:
                self._by_id.pop(old.id, None)
                self._by_name.pop(old.name, None)
                item.version = max(item.version, old.version + 1)
        self._by_id[item.id] = item
        self._by_name[item.name] = item
        return item

    def add_item(self, id, name, description, shape, dtype=None, order="C", format=None, value=None):
        """Adds (or replaces) an item; `id` None takes the lowest free ID
        from 0x1000."""
        if id is None:
            id = 0x1000
            while id in self._by_id:
                id += 1
        return self._add(Item(id, name, description, shape, dtype=dtype, order=order, format=format, value=value))

    def __getitem__(self, key):
        return self._by_id[int(key)] if isinstance(key, numbers.Integral) else self._by_name[key]

    def __contains__(self, key):
        if isinstance(key, numbers.Integral):
            return int(key) in self._by_id
        return key in self._by_name

    def keys(self):
        return self._by_name.keys()

    def ids(self):
        return self._by_id.keys()

    def values(self):
        return self._by_id.values()

    def items(self):
        return self._by_name.items()

    def __len__(self):
        return len(self._by_id)

    def update(self, heap, new_order="="):
        """Takes a received heap: its descriptors first (new items, or
        replacements), then its values, for items whose descriptors are
        known (a value that comes before its descriptor is passed over, as
        spead2 does). Returns the items updated, by name."""
        for raw in heap.get_descriptors():
            self._add(Item.from_raw(raw))
        updated = {}
        for raw_item in heap.get_items():
            if raw_item.id <= 0x06:
                continue  # SPEAD's own fields
            item = self._by_id.get(raw_item.id)
            if item is None:
                _logger.warning("Item with ID %#x received but there is no descriptor", raw_item.id)
                continue
            item.set_from_raw(raw_item, new_order=new_order)
            updated[item.name] = item
        return updated


_SELECTIONS = ("stale", "all", "none")


class HeapGenerator:
    """Builds heaps from an item group: descriptors and values that are new
    or changed ('stale'), all of them, or none."""

    def __init__(self, item_group, descriptor_frequency=None, flavour=None):
        self._group = item_group
        self._frequency = descriptor_frequency
        self._flavour = flavour if flavour is not None else Flavour()
        # Per item id: (the Item sent, call it was last described at,
        # version last sent).
        self._sent = {}
        self._calls = 0

    def _heap(self):
        from .send import Heap

        return Heap(self._flavour)

    def add_to_heap(self, heap, descriptors="stale", data="stale"):
        """Adds the selected descriptors and values to `heap`."""
        if descriptors not in _SELECTIONS:
            raise ValueError("descriptors must be one of 'stale', 'all', 'none'")
        if data not in _SELECTIONS:
            raise ValueError("data must be one of 'stale', 'all', 'none'")
        for item in self._group.values():
            sent_item, described_at, version = self._sent.get(item.id, (None, None, None))
            if sent_item is not item:
                described_at, version = None, None
            describe = descriptors == "all" or (
                descriptors == "stale"
                and (
                    described_at is None
                    or (self._frequency is not None and self._calls - described_at >= self._frequency)
                )
            )
            if describe:
                heap.add_descriptor(item)
                described_at = self._calls
            if item.value is not None and (data == "all" or (data == "stale" and item.version != version)):
                heap.add_item(item)
                version = item.version
            self._sent[item.id] = (item, described_at, version)
        self._calls += 1
        return heap

    def get_heap(self, descriptors="stale", data="stale"):
        """A new heap of the selected descriptors and values."""
        return self.add_to_heap(self._heap(), descriptors, data)

    def get_start(self):
        """A heap that starts the stream."""
        heap = self._heap()
        heap.add_start()
        return heap

    def get_end(self):
        """A heap that ends the stream."""
        heap = self._heap()
        heap.add_end()
        return heap


class SendItemGroup(ItemGroup, HeapGenerator):
    """spead2's ``send.ItemGroup``: an item group that builds heaps."""

    def __init__(self, descriptor_frequency=None, flavour=None):
        ItemGroup.__init__(self)
        HeapGenerator.__init__(self, self, descriptor_frequency, flavour)
