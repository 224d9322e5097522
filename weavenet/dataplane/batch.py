"""Batches of frames between actors over ZeroMQ (capture <-> forwarder <-> crypto).

A batch is one multipart message: a small msgpack map (always ``v`` and ``n``, plus whatever
the sender adds, e.g. ``src``/``dst`` peers or ``via``) followed by one raw part per frame.
Frames are never packed inside msgpack, so no codec pass runs over their bytes. What copying
remains: the senders pass ``copy=False``, but pyzmq still copies every part smaller than
``zmq.COPY_THRESHOLD`` (64 KiB) into its message (cheaper than sharing it), which is nearly
every frame; only parts that large (GSO super-frames) are shared with libzmq until sent. The
ipc transport then writes each part through a Unix socket (a kernel copy per crossing). The
receiver, with ``copy=False``, gets ``zmq.Frame`` objects and slices their memory as
memoryviews without copying again.

Nothing here touches a socket; parts may be ``bytes``, ``memoryview`` or ``zmq.Frame``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import msgpack

from weavenet.dataplane.frame import ETH_HLEN, VLAN_HLEN, VNET_HDR_LEN, Buffer
from weavenet.runtime.codec import unpack_map

VERSION = 1
MAX_BATCH = 4096  # frames per batch
MAX_HEADER_LEN = 4096
# A GSO super-frame: a 64 KiB IP packet behind a vnet header and a doubly tagged Ethernet header.
MAX_FRAME_LEN = 0xFFFF + VNET_HDR_LEN + ETH_HLEN + 2 * VLAN_HLEN


# glibc mallopt() parameters
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_malloc(keep: int = 1 << 20) -> bool:
    """Stop glibc from returning heap to the kernel after every data-plane buffer.

    Every super-frame passes through a fresh 64 KiB buffer (a TAP read, a datagram, a ZeroMQ
    message). With the default 128 KiB trim threshold freeing one shrinks the heap and the next
    allocation page-faults it back in: about 6% of the router's CPU under TCP load. Keeping up
    to ``keep`` bytes of free heap (and a fixed mmap threshold above the largest item, so the
    thresholds do not move) removes that churn at a bounded cost in resident memory.
    False where mallopt is unavailable (not glibc): nothing changes there.
    """
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded: libc's on glibc
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 256 << 10) and mallopt(_M_TRIM_THRESHOLD, keep)
                and mallopt(_M_TOP_PAD, 256 << 10))


class BatchError(ValueError):
    """A malformed batch: bad header, count mismatch, empty or oversized frame."""


def encode_batch(header: dict[str, Any], frames: Sequence[Buffer]) -> list[Buffer]:
    """Parts for ``socket.send_multipart(parts, copy=False)``; ``header`` must not use v/n."""
    if not frames:
        raise BatchError("a batch needs at least one frame")
    if len(frames) > MAX_BATCH:
        raise BatchError(f"{len(frames)} frames exceed the batch limit {MAX_BATCH}")
    head = msgpack.packb({**header, "v": VERSION, "n": len(frames)})
    return [head, *frames]


def _buffer(part: Any) -> Buffer:
    # zmq.Frame (copy=False) exposes its memory as .buffer; bytes/memoryview pass through.
    buf = getattr(part, "buffer", part)
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise BatchError(f"unsupported part type {type(part).__name__}")
    return buf


def decode_batch(parts: Sequence[Any]) -> tuple[dict[str, Any], list[Buffer]]:
    if len(parts) < 2:
        raise BatchError(f"batch of {len(parts)} parts has no frames")
    raw = _buffer(parts[0])
    header = unpack_map(raw, BatchError, "batch header", MAX_HEADER_LEN)
    if header.get("v") != VERSION:
        raise BatchError(f"unknown batch version {header.get('v')!r}")
    n = header.get("n")
    if type(n) is not int or n != len(parts) - 1:
        raise BatchError(f"batch header says {n!r} frames, got {len(parts) - 1}")
    if n > MAX_BATCH:
        raise BatchError(f"{n} frames exceed the batch limit {MAX_BATCH}")
    frames = [_buffer(p) for p in parts[1:]]
    for frame in frames:
        if not 0 < len(frame) <= MAX_FRAME_LEN:
            raise BatchError(f"frame of {len(frame)} bytes out of range")
    return header, frames
