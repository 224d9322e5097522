"""Sealing as a one-way stage: the crypto actor sends the sealed datagrams itself, from the
router's UDP port, on the socket the supervisor opened and shares with the forwarder.

Two throwaway "host" namespaces joined by a veth pair (198.18.0.1/24 and .2/24) each run a real
router launched with a password (`weave launch --no-fastdp --password ...` under nsenter), with a
"container" namespace attached on each. The datagrams on the wire are read with a packet socket
on b's end of the link.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.functional.conftest import Router, RouterPair, router_pair
from tests.support import netns_pings, wait_for
from weavenet.dataplane import sleeve
from weavenet.dataplane.udp_port import UDP_FD_ENV
from weavenet.host.netns import socket_in_netns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun"),
    pytest.mark.timeout(180),
]

PORT = 6783
ETH_P_IP = 0x0800
A_NAME, B_NAME = "02:00:00:00:0a:01", "02:00:00:00:0b:02"
A_IP, B_IP = "10.0.1.1", "10.0.1.2"


@pytest.fixture(scope="module")
def pair() -> Iterator[RouterPair]:
    with router_pair("wz", "--no-fastdp", "--password", "sesame", a_flags=("--name", A_NAME),
                     b_flags=("--name", B_NAME)) as p:
        yield p


def udp_socket_of(pid: int) -> str:
    """The socket (``socket:[inode]``) an actor got as the router's UDP socket."""
    env = dict(kv.split("=", 1) for kv in
               Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
    return os.readlink(f"/proc/{pid}/fd/{env[UDP_FD_ENV]}")


def sleeve_datagrams_at_b(p: RouterPair, during: Callable[[], object]) -> list[tuple[int, bytes]]:
    """(UDP source port, payload head) of each UDP datagram to 6783 arriving at b while
    ``during`` runs."""
    fd = os.open(f"/var/run/netns/{p.b.ns}", os.O_RDONLY)
    try:
        sock = socket_in_netns(fd, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    finally:
        os.close(fd)
    sock.bind(("ub", ETH_P_IP))
    sock.settimeout(0.2)
    seen: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                pkt = sock.recv(65535)
            except TimeoutError:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            frag_offset = struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF
            if pkt[9] != socket.IPPROTO_UDP or frag_offset:
                continue
            sport, dport = struct.unpack_from("!HH", pkt, ihl)
            if dport == PORT:
                seen.append((sport, bytes(pkt[ihl + 8 : ihl + 8 + sleeve.OUTER_LEN])))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        during()
    finally:
        stop.set()
        t.join(5)
        sock.close()
    return seen


def sealed_frames(seen: list[tuple[int, bytes]]) -> list[int]:
    """Source ports of the sealed FRAMES datagrams among ``seen``."""
    out = []
    for sport, head in seen:
        hdr = sleeve.parse_header(head)
        if hdr.kind == sleeve.FRAMES and hdr.flags & sleeve.ENCRYPTED:
            out.append(sport)
    return out


def crypto_counters(r: Router) -> dict:
    return r.actors()["crypto"]["status"].get("counters", {})


def test_sealed_datagrams_leave_from_the_routers_port_sent_by_crypto(pair: RouterPair):
    seen = sleeve_datagrams_at_b(pair, lambda: netns_pings(pair.ca, B_IP, count=5))
    ports = sealed_frames(seen)
    assert len(ports) >= 5, seen
    assert set(ports) == {PORT}
    # the same socket in both actors: the one the supervisor opened
    actors = pair.a.actors()
    assert udp_socket_of(actors["forwarder"]["pid"]) == udp_socket_of(actors["crypto"]["pid"])
    # crypto counts what it sent; the forwarder no longer sees sealed datagrams
    c = wait_for(lambda: (c := crypto_counters(pair.a)).get("tx_datagrams", 0) >= 5 and c,
                 timeout=5, what="crypto's tx_datagrams in its status")
    assert c["sealed"] >= c["tx_datagrams"] and c.get("dropped", 0) == 0
    assert "crypto_failed" not in pair.a.actors()["forwarder"]["status"]["counters"]["drops"]


def kill_9(r: Router, name: str) -> dict:
    before = r.actors()[name]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted() -> dict | None:
        a = r.actors()[name]
        return a if a["state"] == "running" and a["pid"] not in (None, before["pid"]) else None

    return wait_for(restarted, 20, f"{name} to be restarted")


def test_a_forwarder_killed_with_kill_9_finds_the_same_socket_and_crypto_keeps_sending(
        pair: RouterPair):
    sock = udp_socket_of(pair.a.actors()["crypto"]["pid"])
    fwd = kill_9(pair.a, "forwarder")
    assert udp_socket_of(fwd["pid"]) == sock  # not closed, not rebound: the supervisor's
    wait_for(lambda: netns_pings(pair.ca, B_IP), timeout=20, what="ping a -> b after the kill")
    seen = sleeve_datagrams_at_b(pair, lambda: netns_pings(pair.ca, B_IP, count=3))
    assert sealed_frames(seen) and set(sealed_frames(seen)) == {PORT}


def test_a_crypto_actor_killed_with_kill_9_sends_again_from_the_port(pair: RouterPair):
    sock = udp_socket_of(pair.a.actors()["forwarder"]["pid"])
    crypto = kill_9(pair.a, "crypto")
    assert udp_socket_of(crypto["pid"]) == sock
    # gossip re-keys the connection for the new crypto actor, then traffic flows again
    wait_for(lambda: netns_pings(pair.ca, B_IP), timeout=30, what="ping a -> b after the kill")
    seen = sleeve_datagrams_at_b(pair, lambda: netns_pings(pair.ca, B_IP, count=3))
    assert sealed_frames(seen) and set(sealed_frames(seen)) == {PORT}
    wait_for(lambda: crypto_counters(pair.a).get("tx_datagrams", 0) >= 3, timeout=5,
             what="the new crypto actor's tx_datagrams")
