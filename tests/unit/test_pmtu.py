import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.frames_helper import eth, ipv4, mac, slow_checksum, vnet
from weavenet.dataplane.frame import ETHERTYPE_IPV4, ETHERTYPE_IPV6, VNET_GSO_TCPV4, VNET_GSO_TCPV6
from weavenet.dataplane.pmtu import (
    FRAG_NEEDED,
    MALFORMED,
    OVERSIZE,
    PathMtu,
    fit_frame,
    frame_budget,
)
from weavenet.dataplane.segment import fragment_ipv4, icmp_frag_needed, segment_tcp
from weavenet.dataplane.sleeve import FRAG_TEST, FRAG_TEST_ACK, MAX_DATAGRAM, PMTU_ACK, PMTU_PROBE

SRC_IP, DST_IP = bytes([10, 0, 1, 1]), bytes([10, 0, 1, 2])
SRC_MAC, DST_MAC = mac(1), mac(2)
L2 = 10 + 14  # vnet + Ethernet header in front of every IP packet below


def udp_frame(size: int, *, df: bool = True) -> bytes:
    payload = struct.pack("!HHHH", 5000, 6000, 8 + size, 0) + bytes(range(256)) * (size // 256 + 1)
    return eth(
        DST_MAC, SRC_MAC, ETHERTYPE_IPV4, ipv4(SRC_IP, DST_IP, 17, payload[: 8 + size], df=df)
    )


# --- ICMP "fragmentation needed" -------------------------------------------------------------


def test_frag_needed_reply_is_a_valid_icmp_packet_back_to_the_sender():
    original = udp_frame(3000)
    reply = icmp_frag_needed(original, 1400)
    assert reply[:10] == bytes(10)  # plain frame: nothing left for the kernel to do
    assert reply[10:16] == SRC_MAC and reply[16:22] == DST_MAC
    assert struct.unpack_from("!H", reply, 22)[0] == ETHERTYPE_IPV4
    ip = reply[L2:]
    assert slow_checksum(ip[:20]) == 0  # header checksum verifies
    total = struct.unpack_from("!H", ip, 2)[0]
    assert total == len(ip) <= 576
    assert ip[9] == 1 and ip[12:16] == DST_IP and ip[16:20] == SRC_IP
    icmp = ip[20:]
    assert (icmp[0], icmp[1]) == (3, 4)
    assert struct.unpack_from("!H", icmp, 6)[0] == 1400
    assert slow_checksum(icmp) == 0
    assert icmp[8:36] == original[L2 : L2 + 28]  # quotes the offending header and more


def test_frag_needed_keeps_vlan_tags_and_works_on_bare_frames():
    tagged = eth(DST_MAC, SRC_MAC, 0x8100, struct.pack("!HH", 42, ETHERTYPE_IPV4))
    tagged += udp_frame(2000)[L2:]
    reply = icmp_frag_needed(tagged, 1400)
    assert reply[22:28] == struct.pack("!HHH", 0x8100, 42, ETHERTYPE_IPV4)
    bare = icmp_frag_needed(udp_frame(2000)[10:], 1400, off=0)
    assert bare[:6] == SRC_MAC and slow_checksum(bare[34:]) == 0


def test_no_frag_needed_for_df_clear_non_ip_or_icmp_errors():
    assert icmp_frag_needed(udp_frame(2000, df=False), 1400) is None
    assert icmp_frag_needed(eth(DST_MAC, SRC_MAC, 0x0806, bytes(2000)), 1400) is None
    error = eth(
        DST_MAC, SRC_MAC, ETHERTYPE_IPV4, ipv4(SRC_IP, DST_IP, 1, b"\x03\x01" + bytes(1998))
    )
    assert icmp_frag_needed(error, 1400) is None


# --- TCP segmentation of GSO super-frames ----------------------------------------------------


def super_frame(payload: bytes, *, mss: int = 1448, flags: int = 0x19, v6: bool = False) -> bytes:
    """What a TSO-enabled TAP hands over: one big TCP packet, partial checksum, gso_size."""
    hdr = bytearray(struct.pack("!HHIIBBHHH", 40000, 5201, 0xFFFFF000, 7, 5 << 4, flags, 500, 0, 0))
    hdr[16:18] = b"\xab\xcd"  # the kernel leaves only a pseudo-header partial sum here
    segment = bytes(hdr) + payload
    if v6:
        ip = (
            struct.pack("!IHBB", 6 << 28, len(segment), 6, 64)
            + bytes(15)
            + b"\x01"
            + bytes(15)
            + b"\x02"
        )
        gso, etype = VNET_GSO_TCPV6, ETHERTYPE_IPV6
    else:
        ip = ipv4(SRC_IP, DST_IP, 6, segment, ident=0xFFFE)[:20]
        gso, etype = VNET_GSO_TCPV4, ETHERTYPE_IPV4
    v = vnet(1, gso, 14 + len(ip) + 20, mss, 14 + len(ip), 16)
    return eth(DST_MAC, SRC_MAC, etype, ip + segment, vnet=v)


def check_segments(segments, payload, mtu, *, v6=False):
    iphl = 40 if v6 else 20
    data = b""
    for i, seg in enumerate(segments):
        assert seg[:10] == bytes(10)
        ip = seg[L2:]
        assert len(ip) <= mtu
        tcp_seg = ip[iphl:]
        if v6:
            assert struct.unpack_from("!H", ip, 4)[0] == len(tcp_seg)
            pseudo = ip[8:40] + struct.pack("!IxxxB", len(tcp_seg), 6)
        else:
            assert slow_checksum(ip[:20]) == 0
            assert struct.unpack_from("!H", ip, 2)[0] == len(ip)
            assert struct.unpack_from("!H", ip, 4)[0] == (0xFFFE + i) & 0xFFFF
            pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp_seg))
        assert slow_checksum(pseudo + tcp_seg) == 0, f"segment {i} TCP checksum"
        seq = struct.unpack_from("!I", tcp_seg, 4)[0]
        assert seq == (0xFFFFF000 + len(data)) & 0xFFFFFFFF
        flags = tcp_seg[13]
        last = i == len(segments) - 1
        assert bool(flags & 0x09) == last  # PSH and FIN only on the last segment
        assert flags & 0x10  # ACK everywhere
        data += tcp_seg[20:]
    assert data == payload


@pytest.mark.parametrize("v6", [False, True])
def test_super_frame_segments_fit_the_mtu_with_valid_checksums(v6):
    payload = bytes(range(251)) * 80  # 20080 bytes, crosses the 32-bit seq wrap
    segments = segment_tcp(super_frame(payload, v6=v6), 1400)
    check_segments(segments, payload, 1400, v6=v6)
    iphl = 40 if v6 else 20
    assert len(segments) == -(-len(payload) // (1400 - iphl - 20))


def test_segments_never_exceed_the_senders_mss():
    payload = bytes(10000)
    segments = segment_tcp(super_frame(payload, mss=1000), 9000)
    assert [len(s) - L2 - 40 for s in segments] == [1000] * 10
    check_segments(segments, payload, 9000)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=1, max_size=30000), st.integers(100, 9000), st.integers(1, 9000))
def test_segmentation_property(payload, mtu, mss):
    segments = segment_tcp(super_frame(payload, mss=mss), mtu)
    check_segments(segments, payload, mtu)


# --- IPv4 fragmentation ----------------------------------------------------------------------


def test_ipv4_fragments_reassemble_to_the_original():
    original = udp_frame(4000, df=False)
    frags = fragment_ipv4(original, 1400)
    assert len(frags) == 3
    data = b""
    for i, frag in enumerate(frags):
        ip = frag[L2:]
        assert len(ip) <= 1400 and slow_checksum(ip[:20]) == 0
        ff = struct.unpack_from("!H", ip, 6)[0]
        assert (ff & 0x1FFF) * 8 == len(data)
        assert bool(ff & 0x2000) == (i < len(frags) - 1)
        data += ip[20:]
    assert data == original[L2 + 20 :]


# --- fitting frames to the path --------------------------------------------------------------


def test_fit_frame_chooses_by_kind_of_frame():
    budget = frame_budget(1472)
    small = udp_frame(100)
    assert fit_frame(small, budget) == ([small], [], None)
    fit = fit_frame(super_frame(bytes(5000)), budget)
    assert fit.drop is None and all(len(f) <= budget for f in fit.send) and len(fit.send) == 4
    fit = fit_frame(udp_frame(2000), budget)
    assert fit.send == [] and fit.drop == FRAG_NEEDED and len(fit.inject) == 1
    assert struct.unpack_from("!H", fit.inject[0], L2 + 26)[0] == budget - L2
    fit = fit_frame(udp_frame(2000, df=False), budget)
    assert fit.drop is None and len(fit.send) == 2 and all(len(f) <= budget for f in fit.send)
    assert fit_frame(eth(DST_MAC, SRC_MAC, 0x0806, bytes(2000)), budget).drop == OVERSIZE
    assert fit_frame(eth(DST_MAC, SRC_MAC, ETHERTYPE_IPV4, b"\x45" + bytes(1999)), 1000).drop == (
        MALFORMED
    )


# --- path MTU discovery ----------------------------------------------------------------------


def converge(pm: PathMtu, *, passes, t0=0.0, limit=120.0):
    """Drive ``pm`` against a simulated path where ``passes(kind, size)`` decides delivery."""
    now = t0
    while now < t0 + limit:
        for probe in pm.poll(now):
            if passes(probe.kind, probe.size):
                ack = PMTU_ACK if probe.kind == PMTU_PROBE else FRAG_TEST_ACK
                pm.on_ack(ack, probe.token, probe.size, now + 0.01)
        if pm.settled and pm.frag_ok is not None:
            return now
        now = max(now + 0.01, pm.next_deadline())
    raise AssertionError("path MTU search did not settle")


def test_a_clean_path_settles_at_once_and_allows_super_frames():
    pm = PathMtu(1472)
    assert converge(pm, passes=lambda kind, size: True) < 0.1
    assert pm.pmtu == 1472 and pm.frag_ok and pm.max_datagram == MAX_DATAGRAM


@pytest.mark.parametrize("true_pmtu", [548, 700, 1000, 1471])
def test_a_narrow_path_is_found_by_search_and_frag_test_failure_is_noticed(true_pmtu):
    pm = PathMtu(1472, probe_timeout=0.5, probe_retries=2)
    assert pm.pmtu == 1472  # optimistic until known
    took = converge(pm, passes=lambda kind, size: kind == PMTU_PROBE and size <= true_pmtu)
    assert true_pmtu - 8 < pm.pmtu <= true_pmtu
    assert pm.frag_ok is False and pm.max_datagram == pm.pmtu
    assert took < 12.0


def test_kernel_emsgsize_lowers_the_estimate_at_once():
    pm = PathMtu(1472)
    converge(pm, passes=lambda kind, size: kind == PMTU_PROBE)
    pm.on_too_big(1472, 5.0, mtu_hint=1372)
    assert pm.pmtu <= 1372
    converge(pm, passes=lambda kind, size: kind == PMTU_PROBE and size <= 1372, t0=5.0)
    assert 1364 < pm.pmtu <= 1372


def test_path_is_reprobed_later_and_the_frag_test_repeats():
    pm = PathMtu(1472, reprobe_interval=600, frag_test_interval=300)
    converge(pm, passes=lambda kind, size: size <= 1000)
    assert pm.pmtu <= 1000 and pm.frag_ok is False
    assert pm.next_deadline() > 100
    # the path grows and fragmentation starts working
    sent = []
    now = 0.0
    while now < 700:
        now = max(now + 0.01, pm.next_deadline())
        for probe in pm.poll(now):
            sent.append(probe.kind)
            ack = PMTU_ACK if probe.kind == PMTU_PROBE else FRAG_TEST_ACK
            pm.on_ack(ack, probe.token, probe.size, now)
    assert FRAG_TEST in sent and pm.frag_ok and pm.pmtu == 1472


def test_a_path_that_shrinks_later_is_found_again_after_the_next_frag_test():
    pm = PathMtu(1472, frag_test_interval=30, probe_timeout=0.5, probe_retries=2)
    converge(pm, passes=lambda kind, size: True)
    assert pm.frag_ok and pm.pmtu == 1472
    # the underlay now drops every datagram above 700 bytes (fragments included)
    now, deadline = 1.0, 60.0
    while now < deadline:
        for probe in pm.poll(now):
            if probe.kind == PMTU_PROBE and probe.size <= 700:
                pm.on_ack(PMTU_ACK, probe.token, probe.size, now + 0.01)
        if pm.settled and pm.frag_ok is False and pm.pmtu <= 700:
            break
        now = max(now + 0.01, pm.next_deadline())
    assert pm.frag_ok is False and 692 < pm.pmtu <= 700
    assert now < 30 + 1.0 + 12, f"took until t={now:.1f}s"


def test_acks_that_do_not_match_are_ignored():
    pm = PathMtu(1472)
    pm.poll(0.0)
    pm.on_ack(PMTU_ACK, 999, 9000, 0.1)  # larger than the link could carry: bogus
    pm.on_ack(FRAG_TEST_ACK, 999, 60001, 0.1)  # unknown token
    assert pm.frag_ok is None and not pm.settled


def test_frames_never_exceed_the_last_size_known_to_work_while_a_path_is_reprobed():
    """On a path that drops datagrams over 700 bytes the frag test fails every 30 s and the
    search is redone, and every 60 s the path is re-probed upwards: for 10 minutes, what the
    frames may use (``pmtu``) never goes above what the first search proved."""
    pm = PathMtu(1472, frag_test_interval=30, reprobe_interval=60, probe_timeout=0.5,
                 probe_retries=2)
    passes = lambda kind, size: kind == PMTU_PROBE and size <= 700  # noqa: E731
    now = converge(pm, passes=passes)
    proved = pm.pmtu
    assert 692 < proved <= 700
    searches, highest = 0, 0
    while now < 600:
        now = max(now + 0.01, pm.next_deadline())
        was_settled = pm.settled
        for probe in pm.poll(now):
            if passes(probe.kind, probe.size):
                pm.on_ack(PMTU_ACK, probe.token, probe.size, now + 0.01)
        searches += was_settled and not pm.settled
        highest = max(highest, pm.pmtu)
    assert searches >= 10  # the re-searches really happened
    assert highest <= proved


def test_a_reprobe_moves_up_only_when_a_bigger_probe_is_acknowledged():
    pm = PathMtu(1472, reprobe_interval=60, frag_test_interval=1000)
    converge(pm, passes=lambda kind, size: kind == PMTU_PROBE and size <= 1000)
    assert pm.pmtu <= 1000
    pm.poll(pm.next_deadline())  # the re-probe starts: nothing proved yet
    assert not pm.settled and pm.pmtu <= 1000
    converge(pm, passes=lambda kind, size: kind == PMTU_PROBE, t0=pm.next_deadline())
    assert pm.pmtu == 1472  # the path grew and a probe proved it
