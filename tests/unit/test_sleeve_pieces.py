"""Datagrams bigger than the path MTU travel as FRAGMENT pieces (one UDP GSO send) and are
put back together from single pieces or from GRO-coalesced reads."""

import contextlib
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.dataplane import sleeve
from weavenet.dataplane.sleeve import (
    FRAGMENT,
    MAX_DATAGRAM,
    MAX_SEGMENTS,
    PIECE_HEADER_LEN,
    Piece,
    Reassembler,
    SleeveError,
    build_outer,
    parse_header,
    parse_piece,
    split_coalesced,
    split_datagram,
)

SENDER = 0x0A0B0C0D0E0F


def datagram(n: int) -> bytes:
    return build_outer(1, 0, SENDER, 7) + os.urandom(n - 20)


def segments(groups: list) -> list[bytes]:
    """What the kernel's GSO makes of each group: consecutive pieces of the given size."""
    out = []
    for parts in groups:
        for i in range(0, len(parts), 2):
            out.append(bytes(parts[i]) + bytes(parts[i + 1]))
    return out


def feed(r: Reassembler, segs: list[bytes], now: float = 0.0) -> list[bytes]:
    done = []
    for seg in segs:
        whole = r.add(parse_piece(parse_header(seg), seg), now)
        if whole is not None:
            done.append(whole)
    return done


def test_super_frame_datagram_is_cut_to_the_path_mtu_and_put_back_together():
    d = datagram(65000)
    groups = split_datagram(d, 1472, sender=SENDER, frag_id=9)
    segs = segments(groups)
    assert all(len(s) == 1472 for s in segs[:-1]) and len(segs[-1]) <= 1472
    assert all(len(parts) // 2 <= MAX_SEGMENTS for parts in groups)
    assert all(sum(map(len, parts)) <= MAX_DATAGRAM for parts in groups)
    assert feed(Reassembler(), segs) == [d]


def test_pieces_in_any_order_with_duplicates_reassemble_once():
    d = datagram(30000)
    segs = segments(split_datagram(d, 1000, sender=SENDER, frag_id=1))
    segs = segs + segs[:3]
    random.Random(4).shuffle(segs)
    assert feed(Reassembler(), segs) == [d]


def test_a_lost_piece_costs_its_datagram_after_the_timeout_and_is_counted():
    r = Reassembler(timeout=1.0)
    lost = segments(split_datagram(datagram(5000), 1000, sender=SENDER, frag_id=1))[1:]
    assert feed(r, lost, now=0.0) == []
    d = datagram(5000)
    assert feed(r, segments(split_datagram(d, 1000, sender=SENDER, frag_id=2)), now=5.0) == [d]
    assert r.dropped == 1 and len(r) == 0


def test_pending_datagrams_are_bounded():
    r = Reassembler(max_pending=4)
    for i in range(10):
        feed(r, segments(split_datagram(datagram(5000), 1000, sender=SENDER, frag_id=i))[:1])
    assert len(r) == 4 and r.dropped == 6


def test_a_reused_id_with_another_total_restarts_the_datagram():
    r = Reassembler()
    feed(r, segments(split_datagram(datagram(5000), 1000, sender=SENDER, frag_id=3))[:2])
    d = datagram(3000)
    assert feed(r, segments(split_datagram(d, 1000, sender=SENDER, frag_id=3))) == [d]
    assert r.dropped == 1


def test_coalesced_read_merges_runs_of_pieces_and_keeps_other_datagrams():
    d1, d2 = datagram(9000), datagram(4000)
    other = datagram(1000)
    segs = (segments(split_datagram(d1, 1000, sender=SENDER, frag_id=1)) + [other]
            + segments(split_datagram(d2, 1000, sender=SENDER, frag_id=2)))
    # GRO coalesces same-sized datagrams; the short last piece of d1 ends one read
    r = Reassembler()
    out = []
    i = 0
    while i < len(segs):
        j = i
        while j < len(segs) and len(segs[j]) == 1000:
            j += 1
        read = b"".join(segs[i : j + 1])
        for item in split_coalesced(read, 1000):
            if isinstance(item, Piece):
                whole = r.add(item, 0.0)
                if whole is not None:
                    out.append(whole)
            else:
                out.append(bytes(item))
        i = j + 1
    assert out == [d1, other, d2]


def test_a_run_split_across_two_reads_still_reassembles():
    d = datagram(20000)
    segs = segments(split_datagram(d, 1000, sender=SENDER, frag_id=5))
    r = Reassembler()
    first = [r.add(p, 0.0) for p in split_coalesced(b"".join(segs[:7]), 1000)]
    second = [r.add(p, 0.0) for p in split_coalesced(b"".join(segs[7:]), 1000)]
    assert first == [None] and second == [d]


def test_a_datagram_cut_into_too_many_tiny_pieces_is_dropped_not_held() -> None:
    r = Reassembler(max_pieces=8)
    for offset in range(9):
        assert r.add(Piece(SENDER, 7, offset, 1000, b"x"), 0.0) is None
    assert len(r) == 0 and r.dropped == 1


@pytest.mark.parametrize("bad", [
    b"",  # nothing
    build_outer(FRAGMENT, 0, SENDER, 1) + b"\x00\x00",  # truncated piece header
    build_outer(FRAGMENT, 0, SENDER, 1) + (0).to_bytes(4, "big") + (10).to_bytes(4, "big")
    + b"x" * 50,  # more bytes than the datagram it claims to belong to
    build_outer(FRAGMENT, 0, SENDER, 1) + (0).to_bytes(4, "big") + (70000).to_bytes(4, "big")
    + b"x",  # oversized total
])
def test_malformed_pieces_are_rejected_with_a_typed_error(bad):
    with pytest.raises(SleeveError):
        parse_piece(parse_header(bad), bad)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.integers(min_value=PIECE_HEADER_LEN + 1,
                                                         max_value=1500))
def test_arbitrary_coalesced_reads_give_bounded_items_and_never_crash(data, size):
    r = Reassembler()
    for item in split_coalesced(data, size):
        if isinstance(item, Piece):
            assert item.offset + len(item.chunk) <= item.total <= MAX_DATAGRAM
            whole = r.add(item, 0.0)
            assert whole is None or len(whole) == item.total
        else:
            assert 0 < len(item) <= size
            with contextlib.suppress(SleeveError):
                parse_header(item)


def test_gathered_datagrams_hold_the_frames_uncopied_and_join_to_the_packed_bytes() -> None:
    frames = [os.urandom(3000), os.urandom(2000), os.urandom(100), os.urandom(50), b"x"]
    kw = {"sender": SENDER, "src_peer": 7, "dst_peer": 8, "seq": 5}
    joined = sleeve.pack_datagram(frames, 5100, **kw).datagrams
    gathered = sleeve.pack_datagram(frames, 5100, gather=True, **kw).datagrams
    assert len(joined) == len(gathered) == 2
    # the first holds two frames: parts, with the frames themselves; the second carries the
    # small ones too, which are cheaper joined
    assert isinstance(gathered[0], list) and gathered[0][2] is frames[0]
    assert isinstance(gathered[1], bytes)
    assert [b"".join(d) if isinstance(d, list) else d for d in gathered] == joined


def test_a_datagram_split_from_its_parts_reassembles_to_the_joined_bytes() -> None:
    parts = [b"P" * 12, os.urandom(5000), b"", os.urandom(777)]
    r = Reassembler()
    whole = None
    for group in split_datagram(parts, 1000, sender=SENDER, frag_id=3):
        # what GSO does: the group's bytes cut every 1000 (a piece may span several parts)
        blob = b"".join(bytes(x) for x in group)
        for seg in (blob[i : i + 1000] for i in range(0, len(blob), 1000)):
            hdr = parse_header(seg)
            whole = r.add(parse_piece(hdr, seg), 0.0) or whole
    assert whole == b"".join(parts)


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=40, max_value=20000), st.integers(min_value=200, max_value=1500),
       st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=255))
def test_a_one_run_read_is_one_piece_and_any_damage_falls_back_to_the_loop(length, size, at,
                                                                           xor):
    """The fast path takes a GRO read that is one GSO send; a damaged header (any byte of
    any piece's header changed) sends it to the per-piece loop, which must then agree with
    what the pieces are one at a time."""
    d = datagram(length)
    for group in split_datagram(d, size, sender=SENDER, frag_id=9):
        read = bytearray(b"".join(bytes(p) for p in group))
        items = split_coalesced(bytes(read), size)
        pieces = [i for i in items if isinstance(i, Piece)]
        if len(group) > 2:
            assert len(items) == 1 and len(pieces) == 1
            assert sleeve._one_run(memoryview(bytes(read)), size) is not None  # the fast path
        whole = pieces[0]
        assert bytes(whole.chunk) == d[whole.offset : whole.offset + len(whole.chunk)]
        # damage one header byte of one piece
        pos = (at % (len(group) // 2)) * size + at % PIECE_HEADER_LEN
        read[pos] ^= xor or 1
        damaged = split_coalesced(bytes(read), size)
        r1, r2 = Reassembler(), Reassembler()
        got_fast = [bytes(x) if not isinstance(x, Piece) else r1.add(x, 0.0) for x in damaged]
        got_slow = [r2.add(x, 0.0) if isinstance(x, Piece) else bytes(x)
                    for off in range(0, len(read), size)
                    for x in split_coalesced(bytes(read[off : off + size]), size)]
        assert [g for g in got_fast if g] == [g for g in got_slow if g]
