import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.frames_helper import eth, mac
from weavenet.dataplane.sleeve import (
    BROADCAST_PEER,
    ENCRYPTED,
    FRAG_TEST,
    FRAME_OVERHEAD,
    FRAMES,
    FRAMES_HEADER_LEN,
    HEARTBEAT,
    MAX_DATAGRAM,
    OUTER_LEN,
    PMTU_PROBE,
    VERSION,
    SleeveError,
    build_control,
    build_outer,
    pack_datagram,
    parse_header,
    peer_from_wire,
    peer_to_wire,
    unpack_control,
    unpack_datagram,
    unpack_frames,
)

KEY = bytes(32)  # a control key (see weavenet.dataplane.control_auth)
A, B = peer_to_wire("02:00:00:00:00:0a"), peer_to_wire("02:00:00:00:00:0b")


def frame(n: int, size: int = 100) -> bytes:
    return eth(mac(2), mac(1), 0x88B5, bytes([n % 256]) * (size - 24))


def pack(frames, max_size, **kw):
    return pack_datagram(frames, max_size, sender=A, src_peer=A, dst_peer=B, **kw)


def test_frames_roundtrip_with_header_fields():
    frames = [frame(i, 60 + i) for i in range(5)]
    packed = pack(frames, 1400, seq=77)
    assert len(packed.datagrams) == 1 and packed.oversized == []
    header, got = unpack_datagram(packed.datagrams[0])
    assert (header.kind, header.sender, header.seq) == (FRAMES, A, 77)
    assert (header.src_peer, header.dst_peer) == (A, B)
    assert [bytes(f) for f in got] == frames


def test_batching_fills_datagrams_to_max_size_and_never_beyond():
    frames = [frame(i, 300) for i in range(22)]
    per = (1400 - FRAMES_HEADER_LEN) // (300 + FRAME_OVERHEAD)
    assert per == 4
    packed = pack(frames, 1400, seq=5)
    assert [len(unpack_datagram(d)[1]) for d in packed.datagrams] == [4, 4, 4, 4, 4, 2]
    assert all(len(d) <= 1400 for d in packed.datagrams)
    headers = [unpack_datagram(d)[0] for d in packed.datagrams]
    assert [h.seq for h in headers] == list(range(5, 5 + len(packed.datagrams)))
    assert [bytes(f) for d in packed.datagrams for f in unpack_datagram(d)[1]] == frames


def test_a_frame_exactly_filling_a_datagram_fits():
    size = 1400 - FRAMES_HEADER_LEN - FRAME_OVERHEAD
    packed = pack([frame(1, size)], 1400)
    assert len(packed.datagrams[0]) == 1400 and packed.oversized == []


def test_frames_too_big_for_any_datagram_are_reported_not_dropped():
    small, big = frame(1), frame(2, 2000)
    packed = pack([small, big, small], 1400)
    assert packed.oversized == [big]
    assert [bytes(f) for f in unpack_datagram(packed.datagrams[0])[1]] == [small, small]


@given(st.lists(st.integers(1, 3000), max_size=40), st.integers(200, 9000))
def test_packing_property_sizes_order_and_completeness(sizes, max_size):
    frames = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    packed = pack(frames, max_size)
    assert all(len(d) <= max_size for d in packed.datagrams)
    fitting = [f for f in frames if FRAMES_HEADER_LEN + FRAME_OVERHEAD + len(f) <= max_size]
    assert [bytes(f) for d in packed.datagrams for f in unpack_datagram(d)[1]] == fitting
    assert len(packed.oversized) == len(frames) - len(fitting)


def test_control_messages_roundtrip_and_pad_to_probe_size():
    probe = build_control(PMTU_PROBE, sender=B, key=KEY, token=9, value=1372, size=1372, seq=3)
    assert len(probe) == 1372
    ctl = unpack_control(probe)
    assert (ctl.kind, ctl.sender, ctl.token, ctl.value, ctl.size, ctl.seq) == (
        PMTU_PROBE,
        B,
        9,
        1372,
        1372,
        3,
    )
    assert unpack_control(build_control(HEARTBEAT, sender=A, key=KEY, token=1)).kind == HEARTBEAT
    assert len(build_control(FRAG_TEST, sender=A, key=KEY, token=2, size=60001)) == 60001


def test_peer_names_map_to_48_bit_wire_ids():
    assert peer_from_wire(peer_to_wire("02:ab:00:00:00:01")) == "02:ab:00:00:00:01"
    with pytest.raises(ValueError):
        peer_to_wire("00:00:00:00:00:00")
    with pytest.raises(SleeveError):
        peer_from_wire(1 << 48)


def test_sealed_datagrams_are_not_unpacked_by_mistake():
    sealed = build_outer(FRAMES, ENCRYPTED, A, 1) + b"\x8f" * 40
    assert parse_header(sealed).flags == ENCRYPTED
    with pytest.raises(SleeveError, match="sealed"):
        unpack_datagram(sealed)


def test_opened_body_unpacks_without_the_outer_header():
    dg = pack([frame(1)], 1400, seq=4).datagrams[0]
    header = parse_header(dg)
    h, frames = unpack_frames(header, dg[OUTER_LEN:])
    assert h.src_peer == A and bytes(frames[0]) == frame(1)


GOOD = pack([frame(1), frame(2)], 1400).datagrams[0]


@pytest.mark.parametrize(
    "data, why",
    [
        (GOOD[: OUTER_LEN - 1], "header"),
        (GOOD[: FRAMES_HEADER_LEN - 3], "frames header"),
        (GOOD[:-1], "overruns"),
        (GOOD[: FRAMES_HEADER_LEN + 1], "length"),
        (GOOD[:FRAMES_HEADER_LEN], "no frames"),
        (GOOD[:FRAMES_HEADER_LEN] + struct.pack("!H", 0), "overruns"),
        (GOOD[:FRAMES_HEADER_LEN] + struct.pack("!H", 5000) + b"x" * 10, "overruns"),
        (bytes([VERSION + 1]) + GOOD[1:], "version"),
        (GOOD[:1] + b"\x63" + GOOD[2:], "kind"),
        (GOOD[:2] + b"\x80" + GOOD[3:], "flags"),
        (GOOD + b"\x00" * (MAX_DATAGRAM + 1 - len(GOOD)), "exceeds"),
        (build_control(HEARTBEAT, sender=A, key=KEY, token=1), "no frames"),
    ],
)
def test_malformed_datagrams_raise_sleeve_error(data, why):
    with pytest.raises(SleeveError, match=why):
        unpack_datagram(data)


def test_frames_without_a_source_peer_are_rejected():
    dg = pack_datagram([frame(1)], 1400, sender=A, src_peer=BROADCAST_PEER, dst_peer=B)
    with pytest.raises(SleeveError):
        unpack_datagram(dg.datagrams[0])


def test_truncated_control_message_is_rejected():
    with pytest.raises(SleeveError):
        unpack_control(build_control(HEARTBEAT, sender=A, key=KEY, token=1)[:-1])


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_only_ever_raise_sleeve_error(data):
    for decode in (unpack_datagram, unpack_control, parse_header):
        with contextlib.suppress(SleeveError):
            decode(data)


@given(st.binary(min_size=1, max_size=100), st.integers(0, 200))
def test_corrupted_valid_datagrams_only_ever_raise_sleeve_error(noise, at):
    data = bytearray(GOOD)
    data[at % len(data) : at % len(data) + len(noise)] = noise
    try:
        header, frames = unpack_datagram(bytes(data))
    except SleeveError:
        return
    assert sum(len(f) + FRAME_OVERHEAD for f in frames) + FRAMES_HEADER_LEN == len(data)
