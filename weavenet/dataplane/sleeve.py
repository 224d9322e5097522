"""The sleeve: UDP datagrams between routers (port 6783).

Layout (network byte order)::

    outer header, 20 bytes, always in clear:
        version u8 (0x52: magic nibble 5, version 2) | kind u8 | flags u8 | reserved u8 (0)
        sender u64   the peer that sent this datagram (lets a NATed peer be recognised)
        seq u64      per-connection, per-direction counter: the nonce and replay-window index
    body (sealed as a whole when flags has ENCRYPTED):
        FRAMES:  src_peer u64 | dst_peer u64 | (len u16 | frame)+
        control: token u64 | value u32 | tag 16 bytes | padding up to the probe size
        FRAGMENT: offset u32 | total u32 | bytes [offset, offset+len) of a whole datagram

A control datagram (heartbeat, PMTU probe, frag test and their acks) is never sealed but always
authenticated: ``tag`` is keyed BLAKE2b over the outer header (reserved byte as 0), token and
value, with the sending direction's key of the TCP connection between the two peers
(:mod:`weavenet.dataplane.control_auth`), and ``seq`` is the sender's control counter, which
the receiver's replay window checks. Version 1 had no tag: its control datagrams could be
forged by anyone knowing a peer's name.

A datagram bigger than the path MTU (a GSO super-frame, when the path passed the frag test)
travels as FRAGMENT pieces of at most the path MTU, each carrying a slice of the whole
datagram (sealed or not) and ``seq`` = a fragment id chosen by the sender. All pieces but the
last have the same size, so the sender hands them to the kernel in one ``sendmsg`` with
UDP_SEGMENT (UDP GSO): one socket buffer crosses the underlay instead of ~45 IP fragments, and
a receiver with UDP_GRO gets them back in one read. :class:`Reassembler` puts them together.

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

from weavenet.crypto.primitives import blake2b
from weavenet.dataplane.frame import Buffer

VERSION = 0x52  # 2: control datagrams carry a tag (version 1 had none)

# kinds
FRAMES = 1
HEARTBEAT = 2  # establishes / keeps the UDP path; token = connection id
HEARTBEAT_ACK = 3
PMTU_PROBE = 4  # DF-set probe of a given size; token = probe id, value = size
PMTU_ACK = 5  # value = size received
FRAG_TEST = 6  # big datagram sent without DF to see whether kernel fragmentation works
FRAG_TEST_ACK = 7
FRAGMENT = 8  # a piece of a datagram bigger than the path MTU
KINDS = frozenset(range(FRAMES, FRAGMENT + 1))
CONTROL_KINDS = KINDS - {FRAMES, FRAGMENT}

# flags
ENCRYPTED = 0x01
KNOWN_FLAGS = ENCRYPTED

BROADCAST_PEER = 0
MAX_DATAGRAM = 65507  # largest IPv4 UDP payload
FRAG_TEST_SIZE = 60001  # as weave: big enough to need fragmentation on any real path

_OUTER = struct.Struct("!BBBBQQ")
_FRAMES = struct.Struct("!QQ")
_CONTROL = struct.Struct("!QI")
TAG_LEN = 16  # of a control datagram's authentication tag
_LEN = struct.Struct("!H")
_PIECE = struct.Struct("!BBBBQQII")  # the outer header, then offset and total
_OFFSET = struct.Struct("!I")
OUTER_LEN = _OUTER.size
FRAMES_HEADER_LEN = OUTER_LEN + _FRAMES.size
FRAME_OVERHEAD = _LEN.size  # per frame inside a datagram
PIECE_HEADER_LEN = _PIECE.size
CONTROL_LEN = OUTER_LEN + _CONTROL.size + TAG_LEN  # the smallest control datagram
# UDP GSO: at most this many segments per send (UDP_MAX_SEGMENTS in older kernels)
MAX_SEGMENTS = 64
MAX_PIECES = 512  # of one datagram being reassembled (see Reassembler)
# pack_datagram(gather=True): a datagram of at most this many frames is left as its parts for
# sendmsg to gather. Measured (loopback, CPython 3.12): one 64 KB frame sent as pieces costs
# ~3-20% less gathered than joined first; twenty 64-byte frames ~45% more, as each part is one
# more buffer for sendmsg to take, while the join copies little.
GATHER_FRAMES = 2


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
    tag: bytes  # authenticates the fields above but size: see control_tag


class Packed(NamedTuple):
    datagrams: list  # bytes; with gather, a list of parts where that is cheaper (pack_datagram)
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
    gather: bool = False,
) -> Packed:
    """Batch ``frames``, in order, into as few datagrams of at most ``max_size`` as fit.

    Datagrams get consecutive sequence numbers from ``seq``. A frame too big for a datagram
    on its own is returned in ``oversized`` (the caller segments it, fragments it or answers
    with ICMP) - never silently dropped. Datagrams are bytes; with ``gather``, one of at most
    :data:`GATHER_FRAMES` frames is the list of its parts instead (header, then each frame's
    length and the frame itself, not copied), for ``sendmsg``.
    """
    join = _gather if gather else _join
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
            datagrams.append(join(parts, flags, sender, seq + len(datagrams), head))
            parts = []
            size = FRAMES_HEADER_LEN
        parts.append(pack_len(len(frame)))
        parts.append(frame)
        size += need
    if parts:
        datagrams.append(join(parts, flags, sender, seq + len(datagrams), head))
    return Packed(datagrams, oversized)


def _join(parts: list[Buffer], flags: int, sender: int, seq: int, head: bytes) -> bytes:
    return b"".join((_OUTER.pack(VERSION, FRAMES, flags, 0, sender, seq), head, *parts))


def _gather(parts: list[Buffer], flags: int, sender: int, seq: int,
            head: bytes) -> bytes | list[Buffer]:
    if len(parts) > 2 * GATHER_FRAMES:
        return _join(parts, flags, sender, seq, head)
    return [_OUTER.pack(VERSION, FRAMES, flags, 0, sender, seq) + head, *parts]


def control_tag(key: bytes, kind: int, flags: int, sender: int, seq: int, token: int,
                value: int) -> bytes:
    """The tag of a control datagram under ``key`` (one direction of one TCP connection)."""
    signed = _OUTER.pack(VERSION, kind, flags, 0, sender, seq) + _CONTROL.pack(token, value)
    return blake2b(signed, digest_size=TAG_LEN, key=key,
                           person=b"weavenet-sleeve").digest()


def build_control(
    kind: int, *, sender: int, token: int, key: bytes, value: int = 0, size: int = 0,
    seq: int = 0
) -> bytes:
    """A heartbeat, probe, frag test or their acks, tagged with ``key`` (the sending
    direction's control key) and zero-padded to ``size`` bytes if larger."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"kind {kind} is not a control kind")
    if size > MAX_DATAGRAM:
        raise ValueError(f"size {size} exceeds a UDP datagram")
    msg = (_OUTER.pack(VERSION, kind, 0, 0, sender, seq) + _CONTROL.pack(token, value)
           + control_tag(key, kind, 0, sender, seq, token, value))
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
    if len(body) < _CONTROL.size + TAG_LEN:
        raise SleeveError("truncated control message")
    token, value = _CONTROL.unpack_from(body, 0)
    tag = bytes(body[_CONTROL.size : _CONTROL.size + TAG_LEN])
    return Control(*header, token, value, size, tag)


# --- pieces of datagrams bigger than the path MTU ------------------------------------------------


class Piece(NamedTuple):
    sender: int
    frag_id: int
    offset: int
    total: int
    chunk: Buffer


def split_datagram(datagram: Buffer | Sequence[Buffer], piece_size: int, *, sender: int,
                   frag_id: int) -> list[list[Buffer]]:
    """Cut ``datagram`` (one buffer, or the parts it is gathered from: a header and frames, a
    clear prefix and a sealed blob) into FRAGMENT pieces of ``piece_size`` bytes (the last may
    be shorter).

    Returns groups of buffers, one ``sendmsg`` each with UDP_SEGMENT = ``piece_size``: every
    group holds at most MAX_SEGMENTS pieces and MAX_DATAGRAM bytes, and each piece is a
    header followed by a slice of the datagram. Parts are joined first: one copy of up to
    64 KiB costs less than cutting pieces across part boundaries in Python (half the time of
    the whole split, measured), and a single buffer needs no copy at all."""
    if not PIECE_HEADER_LEN < piece_size <= MAX_DATAGRAM:
        raise ValueError(f"piece size {piece_size} out of range")
    if isinstance(datagram, bytes | bytearray | memoryview):
        whole = memoryview(datagram)
    elif len(datagram) == 1:
        whole = memoryview(datagram[0])
    else:
        whole = memoryview(b"".join(datagram))
    total = len(whole)
    if not 0 < total <= MAX_DATAGRAM:
        raise ValueError(f"datagram of {total} bytes cannot be split")
    room = piece_size - PIECE_HEADER_LEN
    step = room * min(MAX_SEGMENTS, MAX_DATAGRAM // piece_size)  # bytes of datagram per group
    # the pieces' headers differ only in the offset: pack the rest once
    head = _PIECE.pack(VERSION, FRAGMENT, 0, 0, sender, frag_id, 0, total)
    before, after = head[:-8], head[-4:]
    pack_offset = _OFFSET.pack
    groups: list[list[Buffer]] = []
    for first in range(0, total, step):
        parts: list[Buffer] = []
        add = parts.append
        for offset in range(first, min(first + step, total), room):
            add(before + pack_offset(offset) + after)
            add(whole[offset : offset + room])
        groups.append(parts)
    return groups


def parse_piece(header: Header, data: Buffer) -> Piece:
    """A FRAGMENT datagram (``header`` from :func:`parse_header`) as a :class:`Piece`."""
    if header.kind != FRAGMENT:
        raise SleeveError(f"datagram kind {header.kind} is not a fragment")
    if header.flags:
        raise SleeveError(f"fragment with flags {header.flags:#x}")
    if len(data) <= PIECE_HEADER_LEN:
        raise SleeveError("truncated fragment")
    offset, total = struct.unpack_from("!II", data, OUTER_LEN)
    chunk = memoryview(data)[PIECE_HEADER_LEN:]
    if not OUTER_LEN <= total <= MAX_DATAGRAM or offset + len(chunk) > total:
        raise SleeveError(f"fragment [{offset}, +{len(chunk)}) of a {total}-byte datagram")
    return Piece(header.sender, header.seq, offset, total, chunk)


def split_coalesced(data: Buffer, size: int) -> list[Buffer | Piece]:
    """Split a GRO read (datagrams of ``size`` bytes, the last maybe shorter) into datagrams.

    Runs of consecutive FRAGMENT pieces of one datagram (what one GSO send becomes) are merged
    into one :class:`Piece` on the way, with a single copy, so a super-frame costs one
    :meth:`Reassembler.add` rather than one per piece; a run that makes the whole datagram
    has ``offset`` 0 and ``len(chunk) == total``. Anything else is returned as is, for
    :func:`parse_header` and the per-datagram path (which rejects what is malformed)."""
    view = memoryview(data)
    end = len(view)
    whole = _one_run(view, size)
    if whole is not None:
        return [whole]
    out: list[Buffer | Piece] = []
    unpack = _PIECE.unpack_from
    run: list[memoryview] = []
    key = None
    start = expect = total = 0

    def flush() -> None:
        if len(run) == 1:
            out.append(Piece(key[0], key[1], start, total, run[0]))
        else:
            out.append(Piece(key[0], key[1], start, total, b"".join(run)))
        run.clear()

    for off in range(0, end, size):
        seg = view[off : off + size]
        n = len(seg)
        if n > PIECE_HEADER_LEN:
            version, kind, flags, _, sender, frag_id, offset, tot = unpack(seg, 0)
            if (version == VERSION and kind == FRAGMENT and not flags
                    and OUTER_LEN <= tot <= MAX_DATAGRAM
                    and offset + n - PIECE_HEADER_LEN <= tot):
                if run and ((sender, frag_id) != key or offset != expect or tot != total):
                    flush()
                if not run:
                    key, start, expect, total = (sender, frag_id), offset, offset, tot
                run.append(seg[PIECE_HEADER_LEN:])
                expect += n - PIECE_HEADER_LEN
                continue
        if run:
            flush()
        out.append(seg)
    if run:
        flush()
    return out


@lru_cache(maxsize=8)
def _headers_format(count: int) -> struct.Struct:
    return struct.Struct("!" + "BBBBQQII" * count)


def _one_run(view: memoryview, size: int) -> Piece | None:
    """The usual GRO read (one GSO send: consecutive pieces of one datagram, the last maybe
    shorter) as one :class:`Piece`, checked with one header comparison instead of a loop per
    piece (a 64 KB super-frame: ~45 pieces); None for anything else, which the loop of
    :func:`split_coalesced` sorts out."""
    end = len(view)
    count = -(-end // size)
    last = end - (count - 1) * size
    if count < 2 or size <= PIECE_HEADER_LEN or last <= PIECE_HEADER_LEN:
        return None
    version, kind, flags, _, sender, frag_id, offset, total = _PIECE.unpack_from(view, 0)
    room = size - PIECE_HEADER_LEN
    if (version != VERSION or kind != FRAGMENT or flags
            or not OUTER_LEN <= total <= MAX_DATAGRAM
            or offset + (count - 1) * room + last - PIECE_HEADER_LEN > total):
        return None
    # every piece's header is the first one's but for its offset: pack what they must be
    fields = [VERSION, FRAGMENT, 0, 0, sender, frag_id, 0, total] * count
    fields[6::8] = range(offset, offset + count * room, room)
    expected = _headers_format(count).pack(*fields)
    starts = range(0, end, size)
    if b"".join([view[i : i + PIECE_HEADER_LEN] for i in starts]) != expected:
        return None
    chunk = b"".join([view[i + PIECE_HEADER_LEN : i + size] for i in starts])
    return Piece(sender, frag_id, offset, total, chunk)


class Reassembler:
    """Puts FRAGMENT pieces back together; sans-IO (``now`` injected), bounded in memory.

    At most ``max_pending`` datagrams are in progress (the oldest is dropped for a new one)
    and each is forgotten ``timeout`` seconds after its first piece: a lost piece costs its
    datagram, as a lost IP fragment would. ``dropped`` counts datagrams given up.

    A datagram in progress holds at most ``max_pieces`` pieces: a sender cuts at the path MTU
    (at least ~548 bytes, so ~120 pieces for the largest datagram), and without the bound a
    forged stream of one-byte pieces would hold tens of thousands of buffers per datagram."""

    def __init__(self, *, max_pending: int = 32, timeout: float = 1.0,
                 max_pieces: int = MAX_PIECES) -> None:
        self.max_pending = max_pending
        self.max_pieces = max_pieces
        self.timeout = timeout
        # (sender, frag_id) -> [deadline, total, bytes so far, {offset: chunk}]
        self._pending: dict[tuple[int, int], list] = {}
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, piece: Piece, now: float) -> bytes | None:
        """Take one piece; the whole datagram once its last piece is in, else None."""
        if piece.offset == 0 and len(piece.chunk) == piece.total:
            chunk = piece.chunk
            return chunk if isinstance(chunk, bytes) else bytes(chunk)
        key = (piece.sender, piece.frag_id)
        pending = self._pending
        entry = pending.get(key)
        if entry is not None and (entry[0] < now or entry[1] != piece.total):
            del pending[key]  # stale (an old datagram with a reused id) or inconsistent
            self.dropped += 1
            entry = None
        if entry is None:
            self._make_room(now)
            entry = pending[key] = [now + self.timeout, piece.total, 0, {}]
        chunks = entry[3]
        if piece.offset in chunks:
            return None  # a duplicate
        if len(chunks) >= self.max_pieces:
            del pending[key]
            self.dropped += 1
            return None
        chunks[piece.offset] = piece.chunk
        entry[2] += len(piece.chunk)
        if entry[2] < entry[1]:
            return None
        del pending[key]
        ordered = [chunks[o] for o in sorted(chunks)]
        pos = 0
        for o in sorted(chunks):
            if o != pos:  # overlapping pieces filled the count without covering everything
                self.dropped += 1
                return None
            pos += len(chunks[o])
        return b"".join(ordered)

    def _make_room(self, now: float) -> None:
        pending = self._pending
        for key in [k for k, e in pending.items() if e[0] < now]:
            del pending[key]
            self.dropped += 1
        while len(pending) >= self.max_pending:
            del pending[next(iter(pending))]  # dicts keep insertion order: the oldest
            self.dropped += 1
