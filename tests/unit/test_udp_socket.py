"""The sleeve's UDP socket over loopback: datagrams, pieces, sealed blobs, control messages."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from weavenet.dataplane import sleeve
from weavenet.dataplane import udp as udp_opts
from weavenet.dataplane.sleeve import FRAGMENT, Reassembler, parse_header, parse_piece
from weavenet.dataplane.udp_port import open_udp
from weavenet.dataplane.udp_socket import SEND_FAILED, UdpSocket, route_mtu
from weavenet.runtime.counters import Counters
from weavenet.runtime.log import stderr_logger

ME = sleeve.peer_to_wire("02:00:00:00:00:01")
KEY = bytes(32)  # a control key (see weavenet.dataplane.control_auth)


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


@pytest.fixture
def udp() -> Iterator[UdpSocket]:
    u = UdpSocket(0, sender=ME, frag_id=41, counters=Counters(), log=stderr_logger())
    yield u
    u.close()


def addr(sock: socket.socket) -> tuple[str, int]:
    return sock.getsockname()


def reassembled(receiver: socket.socket, count: int) -> bytes | None:
    """Read ``count`` FRAGMENT pieces (one GSO send arrives as separate datagrams)."""
    r = Reassembler()
    whole = None
    for _ in range(count):
        data = receiver.recv(65535)
        hdr = parse_header(data)
        assert hdr.kind == FRAGMENT and hdr.sender == ME and hdr.seq == 42  # the next frag id
        whole = r.add(parse_piece(hdr, data), 0.0) or whole
    return whole


def test_datagrams_go_whole_or_as_pieces_and_are_counted(udp: UdpSocket,
                                                         receiver: socket.socket) -> None:
    small, big = b"s" * 100, b"b" * 3000
    udp.send_datagrams([small, big], addr(receiver), 1400)
    assert receiver.recv(65535) == small
    if udp.gso:  # the kernel took the GSO send
        assert reassembled(receiver, 3) == big
    else:
        assert receiver.recv(65535) == big
    assert udp.counters.values == {"tx_datagrams": 2, "tx_bytes": 3100}


def test_sealed_blobs_go_behind_the_clear_prefix_and_failed_ones_are_skipped(
        udp: UdpSocket, receiver: socket.socket) -> None:
    prefix = b"P" * 24
    udp.send_sealed(prefix, [b"one", b"", b"two"], addr(receiver), 1400)
    assert [receiver.recv(100), receiver.recv(100)] == [prefix + b"one", prefix + b"two"]
    assert udp.counters.values == {"tx_datagrams": 2, "tx_bytes": 54}


def test_a_refused_send_drops_the_rest_of_the_batch(udp: UdpSocket) -> None:
    # port 0 is not a destination: every send fails
    udp.send_datagrams([b"a", b"b", b"c"], ("127.0.0.1", 0), 1400)
    assert udp.counters.drops == {SEND_FAILED: 3}
    assert udp.counters.values == {"tx_datagrams": 3, "tx_bytes": 0}


class NoGso:
    """Stands in for a socket whose kernel refuses UDP_SEGMENT."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendmsg(self, *_: Any) -> int:
        raise OSError(errno.EIO, "no GSO")

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent.append((bytes(data), addr))
        return len(data)

    def close(self) -> None:
        pass


def test_without_gso_big_datagrams_go_whole_from_then_on(udp: UdpSocket) -> None:
    udp.sock.close()
    udp.sock = NoGso()  # type: ignore[assignment]
    big = b"b" * 3000
    udp.send_datagrams([big, big], ("127.0.0.1", 9), 1400)
    assert not udp.gso
    assert udp.sock.sent == [(big, ("127.0.0.1", 9))] * 2  # type: ignore[attr-defined]
    assert udp.frag_id == 42  # only the first tried pieces


def test_a_control_message_is_sent_and_counted(udp: UdpSocket, receiver: socket.socket) -> None:
    udp.send_control(sleeve.HEARTBEAT, addr(receiver), 7, KEY)
    msg = receiver.recv(100)
    assert parse_header(msg).kind == sleeve.HEARTBEAT and parse_header(msg).sender == ME
    udp.send_control(sleeve.HEARTBEAT, ("127.0.0.1", 0), 7, KEY)
    assert udp.counters.values == {"control_tx": 1, "control_send_errors": 1}


def test_a_probe_sets_df_for_its_one_send(udp: UdpSocket, receiver: socket.socket) -> None:
    udp.send_control(sleeve.PMTU_PROBE, addr(receiver), 1, KEY, size=1400, df=True)
    assert len(receiver.recv(65535)) == 1400
    assert udp.sock.getsockopt(socket.IPPROTO_IP, udp_opts.IP_MTU_DISCOVER) == \
        udp_opts.IP_PMTUDISC_DONT
    assert udp.counters.values == {"control_tx": 1}


def test_a_probe_bigger_than_the_link_raises_emsgsize(udp: UdpSocket,
                                                      receiver: socket.socket) -> None:
    too_big = route_mtu(addr(receiver)) + 100  # the route's MTU, plus some
    if too_big > sleeve.MAX_DATAGRAM:
        pytest.skip("loopback's MTU is above a UDP datagram")
    with pytest.raises(OSError) as info:
        udp.send_control(sleeve.PMTU_PROBE, addr(receiver), 1, KEY, size=too_big, df=True)
    assert info.value.errno == errno.EMSGSIZE


def test_a_probe_leaves_from_the_same_port_and_datagrams_still_reach_the_shared_socket(
        udp: UdpSocket, receiver: socket.socket) -> None:
    udp.send_control(sleeve.PMTU_PROBE, addr(receiver), 1, KEY, size=1400, df=True)
    msg, source = receiver.recvfrom(65535)
    assert len(msg) == 1400 and source[1] == udp.sock.getsockname()[1]
    assert udp.probe is not None  # the kernel let it join the port
    assert udp.probe.getsockopt(socket.IPPROTO_IP, udp_opts.IP_MTU_DISCOVER) == \
        udp_opts.IP_PMTUDISC_PROBE
    # datagrams from many source ports (the kernel's reuseport hash would spread them) all
    # arrive on the shared socket, none on the send-only probe socket
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
    try:
        for i, s in enumerate(senders):
            s.sendto(b"%d" % i, ("127.0.0.1", udp.sock.getsockname()[1]))
        got = set()
        udp.sock.settimeout(2.0)
        for _ in senders:
            got.add(udp.sock.recv(100))
        assert got == {b"%d" % i for i in range(32)}
        with pytest.raises(BlockingIOError):
            udp.probe.recv(100)
    finally:
        for s in senders:
            s.close()


def test_a_second_router_cannot_join_the_port() -> None:
    first = open_udp(0)
    try:
        with pytest.raises(OSError) as info:
            open_udp(first.getsockname()[1])
        assert info.value.errno == errno.EADDRINUSE
    finally:
        first.close()


def test_a_big_sealed_blob_goes_as_pieces_gathered_from_prefix_and_blob(
        udp: UdpSocket, receiver: socket.socket) -> None:
    prefix, blob = b"P" * 12, bytes(range(256)) * 12
    udp.send_sealed(prefix, [blob], addr(receiver), 1000)
    if not udp.gso:
        pytest.skip("no UDP GSO here")
    assert reassembled(receiver, 4) == prefix + blob
    assert udp.counters.values == {"tx_datagrams": 1, "tx_bytes": len(prefix + blob)}


def test_gathered_datagrams_go_as_sent_whole_or_as_pieces(udp: UdpSocket,
                                                          receiver: socket.socket) -> None:
    small = [b"H" * 36, b"\x00\x03", b"abc"]
    big = [b"H" * 36, b"\x0b\xb8", bytes(range(250)) * 12]
    udp.send_datagrams([small, big], addr(receiver), 1400)
    assert receiver.recv(65535) == b"".join(small)
    if udp.gso:
        assert reassembled(receiver, 3) == b"".join(big)
    else:
        assert receiver.recv(65535) == b"".join(big)
    assert udp.counters.values == {"tx_datagrams": 2, "tx_bytes": 41 + 3038}
