"""Frames packed into datagrams that fit one path, the oversized ones made to fit first."""

from __future__ import annotations

from tests.unit.frames_helper import eth, ipv4, mac
from weavenet.dataplane.frame import ETHERTYPE_ARP, ETHERTYPE_IPV4
from weavenet.dataplane.outbound import pack_for_path
from weavenet.dataplane.pmtu import FRAG_NEEDED, OVERSIZE
from weavenet.dataplane.sleeve import parse_header, unpack_datagram

ME, PEER = 0x020000000001, 0x020000000002
SRC_IP, DST_IP = bytes([10, 0, 1, 1]), bytes([10, 0, 1, 2])


def ip_frame(size: int, *, df: bool) -> bytes:
    return eth(mac(2), mac(1), ETHERTYPE_IPV4, ipv4(SRC_IP, DST_IP, 17, bytes(size), df=df))


def pack(frames: list[bytes], max_datagram: int = 1472, seq: int = 10):
    return pack_for_path(frames, max_datagram, sender=ME, src_peer=ME, dst_peer=PEER, seq=seq)


def test_frames_that_fit_are_packed_as_they_are() -> None:
    frames = [ip_frame(500, df=True) for _ in range(5)]
    out = pack(frames)
    assert (out.sent, out.fitted, out.inject, out.drops) == (5, 0, [], {})
    assert [parse_header(d).seq for d in out.datagrams] == list(range(10, 10 + len(out.datagrams)))
    assert [bytes(f) for d in out.datagrams for f in unpack_datagram(d)[1]] == frames


def test_an_oversized_ipv4_packet_without_df_is_fragmented_and_numbered_on() -> None:
    small, big = ip_frame(100, df=True), ip_frame(3000, df=False)
    out = pack([small, big])
    assert out.fitted >= 3 and out.sent == 1 + out.fitted
    assert [parse_header(d).seq for d in out.datagrams] == list(range(10, 10 + len(out.datagrams)))
    assert bytes(unpack_datagram(out.datagrams[0])[1][0]) == small
    assert all(len(d) <= 1472 for d in out.datagrams)


def test_an_oversized_packet_with_df_is_answered_with_icmp_for_our_bridge() -> None:
    out = pack([ip_frame(3000, df=True)])
    assert (out.datagrams, out.sent, out.drops) == ([], 0, {FRAG_NEEDED: 1})
    assert len(out.inject) == 1


def test_what_cannot_be_made_to_fit_is_dropped_and_counted() -> None:
    arp = eth(mac(2), mac(1), ETHERTYPE_ARP, bytes(3000))
    out = pack([arp, arp])
    assert (out.datagrams, out.sent, out.fitted, out.drops) == ([], 0, 0, {OVERSIZE: 2})
