"""Batches of frames between actors over ZeroMQ (capture -> forwarder).

A batch is one multipart message: a small msgpack map (always ``v``, ``n`` the number of
frames and ``p`` the number of frames in each following part, plus whatever the sender adds)
followed by the parts. A part holding one frame is that frame's bytes; a part holding several
(a run of frames below ``PACK_BELOW`` bytes) is each frame behind its u32 length. Why pack: a
ZeroMQ message part costs a few microseconds on each side whatever its size (pyzmq's
per-part calls, libzmq's per-part bookkeeping), more than copying a small frame, so 64 small
frames in one part cost one part; a big frame (a GSO super-frame) stays a part of its own, not
copied into a run. Frames are never inside msgpack, so no codec pass runs over their bytes.
What copying remains: the senders pass ``copy=False``, but pyzmq still copies every part
smaller than ``zmq.COPY_THRESHOLD`` (64 KiB) into its message (cheaper than sharing it); parts
that large are shared with libzmq until sent. The ipc transport then writes each part through
a Unix socket (a kernel copy per crossing). The receiver, with ``copy=False``, gets
``zmq.Frame`` objects and slices their memory as memoryviews without copying again.

Nothing here touches a socket; parts may be ``bytes``, ``memoryview`` or ``zmq.Frame``.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Sequence
from typing import Any

import msgpack

from weavenet.dataplane.frame import ETH_HLEN, VLAN_HLEN, VNET_HDR_LEN, Buffer
from weavenet.runtime.codec import unpack_map

VERSION = 2
MAX_BATCH = 4096  # frames per batch
PACK_BELOW = 4096  # frames this small travel packed in runs (see the module docstring)
_LEN = struct.Struct("!I")
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
    """Parts for ``socket.send_multipart(parts, copy=False)``; ``header`` must not use v/n/p."""
    if not frames:
        raise BatchError("a batch needs at least one frame")
    if len(frames) > MAX_BATCH:
        raise BatchError(f"{len(frames)} frames exceed the batch limit {MAX_BATCH}")
    parts: list[Buffer] = []
    counts: list[int] = []
    run: list[Buffer] = []
    pack = _LEN.pack

    def flush() -> None:
        if len(run) == 1:
            parts.append(run[0])
        elif run:
            parts.append(b"".join([x for f in run for x in (pack(len(f)), f)]))
        if run:
            counts.append(len(run))
            run.clear()

    for frame in frames:
        if len(frame) < PACK_BELOW:
            run.append(frame)
        else:
            flush()
            parts.append(frame)
            counts.append(1)
    flush()
    head = msgpack.packb({**header, "v": VERSION, "n": len(frames), "p": counts})
    return [head, *parts]


def _buffer(part: Any) -> Buffer:
    # zmq.Frame (copy=False) exposes its memory as .buffer; bytes/memoryview pass through.
    buf = getattr(part, "buffer", part)
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise BatchError(f"unsupported part type {type(part).__name__}")
    return buf


def _unpack(buf: Buffer, k: int, out: list[Buffer]) -> None:
    """The ``k`` frames of a packed part, as slices of it."""
    view = memoryview(buf)
    end = len(view)
    pos = 0
    unpack = _LEN.unpack_from
    for _ in range(k):
        if pos + 4 > end:
            raise BatchError("packed part ends inside a length")
        (n,) = unpack(view, pos)
        pos += 4
        if not 0 < n < PACK_BELOW or pos + n > end:
            raise BatchError(f"packed frame of {n} bytes out of range")
        out.append(view[pos : pos + n])
        pos += n
    if pos != end:
        raise BatchError(f"{end - pos} bytes after the packed frames")


def decode_batch(parts: Sequence[Any]) -> tuple[dict[str, Any], list[Buffer]]:
    if len(parts) < 2:
        raise BatchError(f"batch of {len(parts)} parts has no frames")
    raw = _buffer(parts[0])
    header = unpack_map(raw, BatchError, "batch header", MAX_HEADER_LEN)
    if header.get("v") != VERSION:
        raise BatchError(f"unknown batch version {header.get('v')!r}")
    n, counts = header.get("n"), header.get("p")
    if type(n) is not int or not 0 < n <= MAX_BATCH:
        raise BatchError(f"batch header says {n!r} frames")
    if (type(counts) is not list or len(counts) != len(parts) - 1
            or any(type(k) is not int or k < 1 for k in counts) or sum(counts) != n):
        raise BatchError(f"batch header's parts {counts!r} do not match {len(parts) - 1} parts")
    frames: list[Buffer] = []
    for part, k in zip(parts[1:], counts, strict=True):
        buf = _buffer(part)
        if k == 1:
            if not 0 < len(buf) <= MAX_FRAME_LEN:
                raise BatchError(f"frame of {len(buf)} bytes out of range")
            frames.append(buf)
        else:
            _unpack(buf, k, frames)
    return header, frames
