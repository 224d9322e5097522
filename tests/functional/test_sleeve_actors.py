"""The sleeve end to end through the real actors: two routers, containers on each, one switch.

Two throwaway "host" namespaces joined by a veth pair (198.18.0.1/24 and .2/24) each run a
real router (`weave launch --no-fastdp` under nsenter): b peers with a, c with b, and the real
gossip actors compute the routes. "Containers" are further namespaces attached with `weave attach`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.functional.conftest import Router
from tests.support import netns_pings, seconds_until, wait_for
from weavenet.dataplane import sleeve
from weavenet.host.netns import socket_in_netns

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun"),
    pytest.mark.timeout(120),
]

PORT = 6783
ETHERTYPE_TEST = 0x88B5  # IEEE 802 local experimental


@dataclass
class Host:
    router: Router
    name: str  # peer name
    underlay: str  # underlay IPv4 address
    container: str = ""  # netns path
    ip: str = ""  # container address
    links: dict[str, str] = field(default_factory=dict)  # neighbour name -> its address


def ns_socket(netns: str, family: int, type_: int, proto: int = 0) -> socket.socket:
    fd = os.open(netns, os.O_RDONLY)
    try:
        return socket_in_netns(fd, family, type_, proto)
    finally:
        os.close(fd)


def actor(h: Host, name: str) -> dict:
    return h.router.actors()[name]


@pytest.fixture(scope="module")
def net() -> Iterator[tuple[Host, Host, Host]]:
    """Hosts a - b - c in a line: a and c have no underlay path to each other."""
    base = Path(f"/tmp/ws-{uuid.uuid4().hex[:6]}")
    base.mkdir()
    routers: list[Router] = []
    try:
        for tag in ("a", "b", "c"):
            (base / tag).mkdir()
            routers.append(Router(base / tag))
        ra, rb, rc = routers
        # Underlay links: created inside one host's namespace, the other end moved over.
        ra.sh(f"ip link add ua type veth peer name ub netns {rb.ns}")
        ra.sh("ip addr add 198.18.0.1/24 dev ua && ip link set ua up")
        rb.sh("ip addr add 198.18.0.2/24 dev ub && ip link set ub up")
        rb.sh(f"ip link add ubc type veth peer name uc netns {rc.ns}")
        rb.sh("ip addr add 198.18.1.1/24 dev ubc && ip link set ubc up")
        rc.sh("ip addr add 198.18.1.2/24 dev uc && ip link set uc up")
        a = Host(ra, "02:00:00:00:0a:01", "198.18.0.1")
        b = Host(rb, "02:00:00:00:0b:02", "198.18.0.2")
        c = Host(rc, "02:00:00:00:0c:03", "198.18.1.2")
        a.links = {b.name: "198.18.0.2"}
        b.links = {a.name: "198.18.0.1", c.name: "198.18.1.2"}
        c.links = {b.name: "198.18.1.1"}
        peers = {a.name: [], b.name: ["198.18.0.1"], c.name: ["198.18.1.1"]}
        for h, ip in ((a, "10.0.1.1"), (b, "10.0.1.2"), (c, "10.0.1.3")):
            # the sleeve's own tests: with the fast datapath the kernel would carry the frames
            # (e.g. past a path that drops big datagrams on UDP 6783 only)
            h.router.weave("launch", "--no-fastdp", "--name", h.name, *peers[h.name])
            h.container = h.router.container_ns()
            h.ip = ip
            h.router.weave("attach", f"{ip}/24", f"netns:{h.container}")

        def routed() -> bool:
            gossip = actor(a, "gossip")["status"]
            return gossip.get("routes", {}).get(c.name) == b.name

        wait_for(routed, timeout=20, what="a's route to c via b")
        yield a, b, c
    finally:
        for r in routers:
            r.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_ping_crosses_hosts_both_ways(net: tuple[Host, Host, Host]):
    a, b, _ = net
    wait_for(lambda: netns_pings(a.container, b.ip), timeout=15, what="ping a -> b")
    assert netns_pings(b.container, a.ip, count=3)

    def path_ok() -> dict | None:  # status rides on heartbeats: up to a second behind
        st = actor(a, "forwarder")["status"]
        counters = st.get("counters", {})
        ok = st.get("paths", {}).get(b.name, {}).get("state") == "ok"
        # The path may show ok in a snapshot taken before the pings: wait for one after them.
        return st if ok and counters.get("tx") and counters.get("rx") else None

    st = wait_for(path_ok, timeout=5, what="path a -> b ok and traffic counted in status")
    assert st["macs"] >= 2
    assert st["paths"][b.name]["addr"] == f"{b.underlay}:{PORT}"
    assert st["counters"]["tx"] > 0 and st["counters"]["rx"] > 0


def test_large_pings_cross(net: tuple[Host, Host, Host]):
    a, b, _ = net
    wait_for(lambda: netns_pings(a.container, b.ip), timeout=15, what="ping a -> b")
    assert netns_pings(a.container, b.ip, count=2, size=10000)


def _transfer(a: Host, b: Host, payload: bytes) -> tuple[bytes, float]:
    server = ns_socket(b.container, socket.AF_INET, socket.SOCK_STREAM)
    server.bind((b.ip, 0))
    server.listen(1)
    server.settimeout(20)
    port = server.getsockname()[1]
    got: dict[str, bytes] = {}

    def serve() -> None:
        conn, _ = server.accept()
        conn.settimeout(20)
        h = hashlib.sha256()
        n = 0
        with conn:
            while chunk := conn.recv(1 << 20):
                h.update(chunk)
                n += len(chunk)
        got["digest"] = h.digest()
        got["n"] = n.to_bytes(8, "big")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = ns_socket(a.container, socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(20)
    start = time.monotonic()
    client.connect((b.ip, port))
    client.sendall(payload)
    client.shutdown(socket.SHUT_WR)
    t.join(30)
    elapsed = time.monotonic() - start
    client.close()
    server.close()
    assert "digest" in got, "the receiver did not finish"
    assert int.from_bytes(got["n"], "big") == len(payload)
    return got["digest"], elapsed


def test_tcp_transfer_is_byte_exact(net: tuple[Host, Host, Host]):
    a, b, _ = net
    wait_for(lambda: netns_pings(a.container, b.ip), timeout=15, what="ping a -> b")
    payload = random.Random(4422).randbytes(20 * 1024 * 1024)
    digest, elapsed = _transfer(a, b, payload)
    assert digest == hashlib.sha256(payload).digest()
    print(f"\n20 MB TCP a->b in {elapsed:.2f}s: {len(payload) / elapsed / 1e6:.1f} MB/s")


def test_udp_crosses(net: tuple[Host, Host, Host]):
    a, b, _ = net
    rx = ns_socket(b.container, socket.AF_INET, socket.SOCK_DGRAM)
    tx = ns_socket(a.container, socket.AF_INET, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind((b.ip, 0))
        rx.settimeout(0.3)
        port = rx.getsockname()[1]

        def arrives() -> bytes | None:
            tx.sendto(b"Hello, world.", (b.ip, port))
            try:
                return rx.recv(100)
            except TimeoutError:
                return None

        assert wait_for(arrives, timeout=10, what="UDP datagram") == b"Hello, world."


def _mac(netns: str) -> bytes:
    s = ns_socket(netns, socket.AF_PACKET, socket.SOCK_RAW, 0)
    with s:
        s.bind(("ethwe", 0))
        return s.getsockname()[4]


@contextlib.contextmanager
def frame_probe(a: Host, b: Host) -> Iterator[Callable[[], bool]]:
    """A probe that sends an EtherType 0x88b5 frame from a's container to b's and says
    whether it arrived."""
    rx = ns_socket(b.container, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE_TEST))
    tx = ns_socket(a.container, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE_TEST))
    with rx, tx:
        rx.bind(("ethwe", ETHERTYPE_TEST))
        rx.settimeout(0.3)
        tx.bind(("ethwe", ETHERTYPE_TEST))
        dst = _mac(b.container)
        src = tx.getsockname()[4]
        marker = uuid.uuid4().bytes
        frame = dst + src + struct.pack("!H", ETHERTYPE_TEST) + marker + bytes(30)

        def arrives() -> bool:
            tx.send(frame)
            with contextlib.suppress(TimeoutError):
                while True:
                    if marker in rx.recv(2000):
                        return True
            return False

        yield arrives


def test_non_ip_ethernet_frame_crosses(net: tuple[Host, Host, Host]):
    a, b, _ = net
    with frame_probe(a, b) as arrives:
        assert wait_for(arrives, timeout=10, what="EtherType 0x88b5 frame")


def test_malformed_datagrams_are_counted_and_survived(net: tuple[Host, Host, Host]):
    a, b, _ = net
    before = actor(b, "forwarder")
    drops_before = before["status"]["counters"]["dropped"]
    host_a = f"/var/run/netns/{a.router.ns}"
    s = ns_socket(host_a, socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(7)
    good_header = struct.pack("!BBBBQQ", sleeve.VERSION, 1, 0, 0, 0x02000000_0A01, 0)
    junk = [rng.randbytes(n) for n in (1, 5, 19, 100, 1400)]
    junk += [good_header, good_header + b"\x00" * 10, good_header + bytes(16) + b"\xff\xff\x01"]
    # an unknown peer
    junk += [struct.pack("!BBBBQQ", sleeve.VERSION, 1, 0, 0, 0x0BADBADBAD, 0) + bytes(40)]
    with s:
        for _ in range(3):
            for d in junk:
                s.sendto(d, (b.underlay, PORT))

    def counted() -> int:
        st = actor(b, "forwarder")
        n = st["status"]["counters"]["dropped"] - drops_before
        return n if n >= 3 * len(junk) else 0

    wait_for(counted, timeout=5, what="malformed datagrams counted as drops")
    after = actor(b, "forwarder")
    assert after["pid"] == before["pid"]
    drops = after["status"]["counters"]["drops"]
    assert drops.get("malformed_datagram", 0) >= 3 * 8 - 3  # the junk that is not a header
    assert drops.get("unknown_sender", 0) >= 3
    assert netns_pings(a.container, b.ip)


@pytest.mark.parametrize("name", ["forwarder", "capture"])
def test_traffic_resumes_after_kill_9(net: tuple[Host, Host, Host], name: str):
    a, b, _ = net
    wait_for(lambda: netns_pings(a.container, b.ip), timeout=15, what="ping before the kill")
    victim = actor(a, name)["pid"]
    os.kill(victim, signal.SIGKILL)
    took = seconds_until(lambda: netns_pings(a.container, b.ip), 10,
                         f"ping after kill -9 of {name}")
    print(f"\ntraffic resumed {took:.2f}s after kill -9 of {name}")
    assert took < 5.0
    assert actor(a, name)["pid"] != victim


def _zombie(pid: int) -> bool:
    """The process has exited (its parent has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_frames_reach_a_container_while_capture_is_dead(net: tuple[Host, Host, Host]):
    """b's capture killed and kept down (its supervisor stopped for a moment, so nothing
    restarts it): frames from a still reach b's container, written to b's TAP by b's
    forwarder itself."""
    a, b, _ = net
    wait_for(lambda: netns_pings(a.container, b.ip), timeout=15, what="ping before the kill")
    injected = actor(b, "forwarder")["status"]["counters"].get("injected", 0)
    victim = actor(b, "capture")["pid"]
    supervisor = b.router.supervisor_pid()
    assert supervisor is not None
    with frame_probe(a, b) as arrives:
        os.kill(supervisor, signal.SIGSTOP)  # well under its actors' 6 s heartbeat timeout
        try:
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: _zombie(victim), timeout=2, what="capture gone")
            assert wait_for(arrives, timeout=2, what="a frame in b's container, no capture")
            assert _zombie(victim)  # nothing read b's TAP meanwhile
        finally:
            os.kill(supervisor, signal.SIGCONT)
    wait_for(lambda: actor(b, "capture")["pid"] != victim, timeout=10, what="capture back")
    counters = wait_for(lambda: (c := actor(b, "forwarder")["status"]["counters"])
                        .get("injected", 0) > injected and c, timeout=3, what="injected counted")
    assert counters["injected_bytes"] > 0
    assert "tap_unavailable" not in counters.get("drops", {})
    assert netns_pings(a.container, b.ip)


def test_hosts_without_a_path_talk_through_a_relay(net: tuple[Host, Host, Host]):
    """a and c share no underlay link; b relays their frames (unicast and flooded)."""
    a, b, c = net
    relayed_before = actor(b, "forwarder")["status"]["counters"].get("tx", 0)
    wait_for(lambda: netns_pings(a.container, c.ip), timeout=15, what="ping a -> c through b")
    assert netns_pings(c.container, a.ip, count=2)
    payload = random.Random(3).randbytes(4 * 1024 * 1024)
    digest, _ = _transfer(a, c, payload)
    assert digest == hashlib.sha256(payload).digest()

    def relayed() -> int:
        n = actor(b, "forwarder")["status"]["counters"].get("tx", 0) - relayed_before
        return n if n > 100 else 0

    wait_for(relayed, timeout=3, what="b's forwarder relaying")
    assert c.name not in actor(a, "forwarder")["status"]["paths"]


def test_a_path_dropping_big_datagrams_still_carries_big_frames(net: tuple[Host, Host, Host]):
    """The underlay drops UDP datagrams over 1000 bytes: the frag test fails, PMTU discovery
    finds the limit, and super-frames are segmented, IP packets fragmented."""
    a, b, _ = net
    for h in (a, b):
        h.router.sh("iptables -A INPUT -p udp --dport 6783 -m length --length 1001:65535 -j DROP")
        # a fresh forwarder rediscovers the path (discovery otherwise re-runs every minutes)
        os.kill(actor(h, "forwarder")["pid"], signal.SIGKILL)

    def small_path() -> dict | None:
        path = actor(a, "forwarder")["status"].get("paths", {}).get(b.name, {})
        ok = path.get("state") == "ok" and path.get("frag_ok") is False
        return path if ok and path.get("pmtu", 0) <= 1000 - 28 else None

    path = wait_for(small_path, timeout=20, what="path MTU below 1000")
    assert path["pmtu"] >= 900
    wait_for(lambda: netns_pings(a.container, b.ip, size=10000), timeout=10,
             what="10000-byte ping over the small path")
    payload = random.Random(6783).randbytes(4 * 1024 * 1024)
    digest, elapsed = _transfer(a, b, payload)
    assert digest == hashlib.sha256(payload).digest()
    print(f"\n4 MB TCP over a 1000-byte path in {elapsed:.2f}s")

    def fitted() -> int:  # status rides on heartbeats: up to a second behind
        return actor(a, "forwarder")["status"]["counters"].get("fitted", 0)

    assert wait_for(fitted, timeout=3, what="frames segmented or fragmented to the path")
