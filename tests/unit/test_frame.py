import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.frames_helper import eth, ipv4, mac, slow_checksum, vnet
from weavenet.dataplane.frame import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    VNET_GSO_ECN,
    VNET_GSO_TCPV4,
    VNET_HDR_LEN,
    FrameError,
    VnetHdr,
    build_vnet_hdr,
    dst_mac,
    ethertype,
    gso_type,
    inet_checksum,
    ipv4_header,
    is_broadcast,
    is_multicast,
    mac_from_str,
    mac_to_str,
    parse_vnet_hdr,
    src_mac,
)


def test_vnet_header_roundtrips_little_endian_fields():
    hdr = VnetHdr(
        flags=1, gso_type=VNET_GSO_TCPV4, hdr_len=66, gso_size=1448, csum_start=34, csum_offset=16
    )
    raw = build_vnet_hdr(hdr)
    assert len(raw) == VNET_HDR_LEN
    assert raw == vnet(1, 1, 66, 1448, 34, 16)
    assert parse_vnet_hdr(raw + b"rest of frame") == hdr


def test_gso_type_ignores_the_ecn_bit():
    assert gso_type(vnet(gso_type=VNET_GSO_TCPV4 | VNET_GSO_ECN)) == VNET_GSO_TCPV4


def test_short_vnet_header_is_a_frame_error():
    with pytest.raises(FrameError):
        parse_vnet_hdr(b"\x00" * 9)


def test_macs_are_read_after_the_vnet_header():
    frame = eth(mac(1), mac(2), ETHERTYPE_ARP, b"x" * 28)
    assert dst_mac(frame) == mac(1)
    assert src_mac(frame) == mac(2)
    assert dst_mac(frame[VNET_HDR_LEN:], 0) == mac(1)


def test_group_addresses():
    assert is_multicast(b"\xff" * 6) and is_broadcast(b"\xff" * 6)
    assert is_multicast(bytes.fromhex("01005e000001")) and not is_broadcast(b"\x01" * 6)
    assert not is_multicast(mac(7))


def test_ethertype_skips_vlan_tags():
    plain = eth(mac(1), mac(2), ETHERTYPE_IPV4, b"")
    assert ethertype(plain) == (ETHERTYPE_IPV4, VNET_HDR_LEN + 14)
    tagged = eth(mac(1), mac(2), 0x88A8, struct.pack("!HHHH", 10, 0x8100, 20, 0x0806))
    assert ethertype(tagged) == (ETHERTYPE_ARP, VNET_HDR_LEN + 22)


def test_truncated_ethernet_or_vlan_raises():
    with pytest.raises(FrameError):
        ethertype(bytes(VNET_HDR_LEN + 13))
    with pytest.raises(FrameError):
        ethertype(eth(mac(1), mac(2), 0x8100, b"\x00"))


def test_mac_text_roundtrip():
    assert mac_to_str(mac_from_str("02:0a:00:00:01:ff")) == "02:0a:00:00:01:ff"
    with pytest.raises(ValueError):
        mac_from_str("02:0a:00:00:01")


def test_ipv4_header_fields():
    packet = ipv4(bytes([10, 0, 1, 1]), bytes([10, 0, 1, 2]), 17, b"p" * 30, df=True)
    frame = eth(mac(1), mac(2), ETHERTYPE_IPV4, packet)
    ip = ipv4_header(frame, VNET_HDR_LEN + 14)
    assert ip.ihl == 20 and ip.total_length == 50 and ip.protocol == 17
    assert ip.dont_fragment and not ip.is_fragment
    assert ip.src == bytes([10, 0, 1, 1]) and ip.dst == bytes([10, 0, 1, 2])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: p[:19],
        lambda p: b"\x65" + p[1:],
        lambda p: b"\x44" + p[1:],
        lambda p: p[:2] + b"\x00\x05" + p[4:],
    ],
)
def test_malformed_ipv4_headers_raise(mutate):
    packet = ipv4(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 6, b"")
    with pytest.raises(FrameError):
        ipv4_header(mutate(packet), 0)


@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=0xFFFF))
def test_fast_checksum_matches_word_by_word_sum(data, partial):
    # a partial sum of 16-bit words (as a pseudo-header contributes) folds in the same way
    assert inet_checksum(data + b"\x00" * (len(data) % 2), partial) == slow_checksum(
        data + b"\x00" * (len(data) % 2) + struct.pack("!H", partial)
    )
    assert inet_checksum(data) == slow_checksum(data)
