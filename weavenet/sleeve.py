"""The sleeve: UDP datagrams between routers (port 6783).

Layout (network byte order)::

    outer header, 20 bytes, always in clear:
        version u8 (0x51: magic nibble 5, version 1) | kind u8 | flags u8 | reserved u8 (0)
        sender u64   the peer that sent this datagram (lets a NATed peer be recognised)
        seq u64      per-connection, per-direction counter: the nonce and replay-window index
    body (sealed as a whole when flags has ENCRYPTED):
        FRAMES:  src_peer u64 | dst_peer u64 | (len u16 | frame)+
        control: token u64 | value u32 | padding up to the probe size

``src_peer`` is the peer that captured the frames and ``dst_peer`` the one they are for
(``BROADCAST_PEER`` when flooded), so relays can forward without looking at MACs. Frames are
data-plane frames (virtio-net header + Ethernet). A u16 length is enough: a UDP datagram
carries at most 65507 bytes, so no frame that fits a datagram needs more.

Peers travel as their 48-bit MAC-like names in a u64; see :func:`peer_to_wire`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from weavenet.frame import Buffer

VERSION = 0x51

# kinds
FRAMES = 1
HEARTBEAT = 2  # establishes / keeps the UDP path; token = connection id
HEARTBEAT_ACK = 3
PMTU_PROBE = 4  # DF-set probe of a given size; token = probe id, value = size
PMTU_ACK = 5  # value = size received
FRAG_TEST = 6  # big datagram sent without DF to see whether kernel fragmentation works
FRAG_TEST_ACK = 7
KINDS = frozenset(range(FRAMES, FRAG_TEST_ACK + 1))
CONTROL_KINDS = KINDS - {FRAMES}

# flags
ENCRYPTED = 0x01
KNOWN_FLAGS = ENCRYPTED

BROADCAST_PEER = 0
MAX_DATAGRAM = 65507  # largest IPv4 UDP payload
FRAG_TEST_SIZE = 60001  # as weave: big enough to need fragmentation on any real path

_OUTER = struct.Struct("!BBBBQQ")
_FRAMES = struct.Struct("!QQ")
_CONTROL = struct.Struct("!QI")
_LEN = struct.Struct("!H")
OUTER_LEN = _OUTER.size
FRAMES_HEADER_LEN = OUTER_LEN + _FRAMES.size
CONTROL_LEN = OUTER_LEN + _CONTROL.size
FRAME_OVERHEAD = _LEN.size  # per frame inside a datagram


class SleeveError(ValueError):
    """A datagram that is truncated, oversized, or of an unknown version/kind/flag."""


class Header(NamedTuple):
    kind: int
    flags: int
    sender: int
    seq: int


class FramesHeader(NamedTuple):
    kind: int
    flags: int
    sender: int
    seq: int
    src_peer: int
    dst_peer: int


class Control(NamedTuple):
    kind: int
    flags: int
    sender: int
    seq: int
    token: int
    value: int
    size: int  # length of the whole datagram as received (what a probe measures)


class Packed(NamedTuple):
    datagrams: list[bytes]
    oversized: list[Buffer]  # frames that cannot fit max_size even alone: caller must act


# --- peers ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def peer_to_wire(name: str) -> int:
    """'aa:bb:cc:dd:ee:ff' -> 48-bit integer (non-zero: 0 means broadcast on the wire)."""
    parts = name.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"peer name is not MAC-like: {name!r}")
    value = int("".join(p.zfill(2) for p in parts), 16)
    if value == BROADCAST_PEER:
        raise ValueError("the all-zero peer name is reserved")
    return value


@lru_cache(maxsize=4096)
def peer_from_wire(value: int) -> str:
    if not 0 < value < 1 << 48:
        raise SleeveError(f"peer id {value:#x} is not a 48-bit peer name")
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


# --- encoding -------------------------------------------------------------------------------


def build_outer(kind: int, flags: int, sender: int, seq: int) -> bytes:
    return _OUTER.pack(VERSION, kind, flags, 0, sender, seq)


def pack_datagram(
    frames: Sequence[Buffer],
    max_size: int,
    *,
    sender: int,
    src_peer: int,
    dst_peer: int,
    seq: int = 0,
    flags: int = 0,
) -> Packed:
    """Batch ``frames``, in order, into as few datagrams of at most ``max_size`` as fit.

    Datagrams get consecutive sequence numbers from ``seq``. A frame too big for a datagram
    on its own is returned in ``oversized`` (the caller segments it, fragments it or answers
    with ICMP) - never silently dropped.
    """
    if not FRAMES_HEADER_LEN + FRAME_OVERHEAD < max_size <= MAX_DATAGRAM:
        raise ValueError(f"max_size {max_size} out of range")
    head = _FRAMES.pack(src_peer, dst_peer)
    pack_len = _LEN.pack
    datagrams: list[bytes] = []
    oversized: list[Buffer] = []
    parts: list[Buffer] = []
    size = FRAMES_HEADER_LEN
    for frame in frames:
        need = FRAME_OVERHEAD + len(frame)
        if size + need > max_size:
            if FRAMES_HEADER_LEN + need > max_size:
                oversized.append(frame)
                continue
            datagrams.append(_join(parts, flags, sender, seq + len(datagrams), head))
            parts = []
            size = FRAMES_HEADER_LEN
        parts.append(pack_len(len(frame)))
        parts.append(frame)
        size += need
    if parts:
        datagrams.append(_join(parts, flags, sender, seq + len(datagrams), head))
    return Packed(datagrams, oversized)


def _join(parts: list[Buffer], flags: int, sender: int, seq: int, head: bytes) -> bytes:
    return b"".join((_OUTER.pack(VERSION, FRAMES, flags, 0, sender, seq), head, *parts))


def build_control(
    kind: int, *, sender: int, token: int, value: int = 0, size: int = 0, seq: int = 0
) -> bytes:
    """A heartbeat, probe, frag test or their acks, zero-padded to ``size`` bytes if larger."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"kind {kind} is not a control kind")
    if size > MAX_DATAGRAM:
        raise ValueError(f"size {size} exceeds a UDP datagram")
    msg = _OUTER.pack(VERSION, kind, 0, 0, sender, seq) + _CONTROL.pack(token, value)
    if size > len(msg):
        msg += bytes(size - len(msg))
    return msg


# --- decoding -------------------------------------------------------------------------------


def parse_header(data: Buffer) -> Header:
    """The clear outer header; enough to dispatch (frames / control, sealed or not)."""
    if len(data) < OUTER_LEN:
        raise SleeveError(f"datagram of {len(data)} bytes is shorter than the header")
    if len(data) > MAX_DATAGRAM:
        raise SleeveError(f"datagram of {len(data)} bytes exceeds the UDP maximum")
    version, kind, flags, _reserved, sender, seq = _OUTER.unpack_from(data, 0)
    if version != VERSION:
        raise SleeveError(f"unknown sleeve version {version:#x}")
    if kind not in KINDS:
        raise SleeveError(f"unknown datagram kind {kind}")
    if flags & ~KNOWN_FLAGS:
        raise SleeveError(f"unknown flags {flags:#x}")
    return Header(kind, flags, sender, seq)


def unpack_datagram(data: Buffer) -> tuple[FramesHeader, list[memoryview]]:
    """Decode an unencrypted FRAMES datagram into its header and zero-copy frame views."""
    header = parse_header(data)
    if header.kind != FRAMES:
        raise SleeveError(f"datagram kind {header.kind} carries no frames")
    if header.flags & ENCRYPTED:
        raise SleeveError("datagram is sealed; open it before unpacking")
    return unpack_frames(header, memoryview(data)[OUTER_LEN:])


def unpack_frames(header: Header, body: Buffer) -> tuple[FramesHeader, list[memoryview]]:
    """Decode a (plaintext) FRAMES body, e.g. the output of the crypto actor's open()."""
    view = body if isinstance(body, memoryview) else memoryview(body)
    end = len(view)
    if end < _FRAMES.size:
        raise SleeveError("truncated frames header")
    src_peer, dst_peer = _FRAMES.unpack_from(view, 0)
    if src_peer == BROADCAST_PEER:
        raise SleeveError("frames without a source peer")
    frames: list[memoryview] = []
    pos = _FRAMES.size
    unpack_len = _LEN.unpack_from
    while pos < end:
        if pos + FRAME_OVERHEAD > end:
            raise SleeveError("truncated frame length")
        (n,) = unpack_len(view, pos)
        pos += FRAME_OVERHEAD
        if n == 0 or pos + n > end:
            raise SleeveError(f"frame length {n} overruns the datagram")
        frames.append(view[pos : pos + n])
        pos += n
    if not frames:
        raise SleeveError("datagram carries no frames")
    return FramesHeader(*header, src_peer, dst_peer), frames


def unpack_control(data: Buffer) -> Control:
    header = parse_header(data)
    if header.flags & ENCRYPTED:
        raise SleeveError("datagram is sealed; open it before unpacking")
    return unpack_control_body(header, memoryview(data)[OUTER_LEN:], len(data))


def unpack_control_body(header: Header, body: Buffer, size: int) -> Control:
    """Decode a (plaintext) control body; ``size`` is the datagram size as received."""
    if header.kind not in CONTROL_KINDS:
        raise SleeveError(f"datagram kind {header.kind} is not a control message")
    if len(body) < _CONTROL.size:
        raise SleeveError("truncated control message")
    token, value = _CONTROL.unpack_from(body, 0)
    return Control(*header, token, value, size)
