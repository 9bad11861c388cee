"""spead2 raw descriptors as JSON-ready dicts, shared by the interop scripts."""


def descriptor_dict(raw) -> dict:
    """A spead2 RawDescriptor (sent or received) as a dict of plain values."""
    return {
        "id": raw.id,
        "name": raw.name.decode("ascii"),
        "description": raw.description.decode("ascii"),
        "shape": [None if x is None or x < 0 else x for x in raw.shape],
        "format": [[chr(c) if isinstance(c, int) else c, b] for c, b in raw.format],
        "numpy_header": raw.numpy_header.decode("ascii"),
    }
