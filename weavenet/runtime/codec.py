"""Decoding a msgpack map from untrusted bytes, with one kind of error whatever went wrong."""

from __future__ import annotations

from typing import Any

import msgpack

Buffer = bytes | bytearray | memoryview  # what a ZeroMQ part or a socket read can be


def unpack_map(raw: Buffer, error: type[Exception], what: str,
               max_len: int | None = None) -> dict[str, Any]:
    """The msgpack map in ``raw``, or ``error(reason)``; never any other exception.

    Keys must be str or bytes (``strict_map_key``); strings must be UTF-8. ``max_len`` bounds
    the input before msgpack sees it.
    """
    if max_len is not None and len(raw) > max_len:
        raise error(f"{what} of {len(raw)} bytes exceeds {max_len}")
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises a zoo of types (ValueError, ExtraData, ...)
        raise error(f"{what} is not msgpack: {exc.__class__.__name__}") from None
    if not isinstance(obj, dict):
        raise error(f"{what} is not a map")
    return obj
