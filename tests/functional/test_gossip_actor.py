"""The gossip actor against fake peers: real TCP into a real router in a throwaway namespace.

A fake peer is a socket made inside the router's namespace that speaks the wire protocol with the
sans-IO handshake, so each test controls exactly what the router sees: a name collision, two
connections from one peer, garbage, silence, gossip naming a third peer.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from tests.functional.conftest import Router, wait_for
from weavenet.dataplane import sleeve
from weavenet.dataplane.control_auth import ControlKeys, connection_keys
from weavenet.host.netns import open_netns_fd, socket_in_netns
from weavenet.mesh.admission import LOG_BURST, MAX_HANDSHAKING_PER_SOURCE, TOO_MANY_FROM_SOURCE
from weavenet.mesh.connection import HANDSHAKE_TIMEOUT
from weavenet.mesh.handshake import (
    CONNECTION_TO_SELF,
    DUPLICATE_CONNECTION,
    NAME_COLLISION,
    Accepted,
    ConnectionSide,
    Handshake,
    HandshakeConfig,
    Refused,
    prefer,
)
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.topology import Connection, PeerRecord
from weavenet.mesh.wire import (
    Decoder,
    Goodbye,
    Heartbeat,
    Hello,
    Message,
    ProtocolHeader,
    TopologyUpdate,
    WireError,
    encode,
    encode_header,
)
from weavenet.runtime import bus

pytestmark = pytest.mark.root
PORT = 6783


def ns_socket(router: Router, kind: int = socket.SOCK_STREAM) -> socket.socket:
    fd, _ = open_netns_fd(f"/var/run/netns/{router.ns}")
    try:
        return socket_in_netns(fd, socket.AF_INET, kind)
    finally:
        os.close(fd)


class FakePeer:
    """One TCP connection into the router's namespace, driven by the test."""

    def __init__(self, router: Router, peer: Peer, conn_id: int | None = None,
                 source: str = "127.0.0.1", udp: bool = False) -> None:
        self.sock = ns_socket(router)
        self.udp = ns_socket(router, socket.SOCK_DGRAM) if udp else None
        self.sock.settimeout(5)
        self.sock.bind((source, 0))  # all of 127/8 is local: more sources than one
        self.sock.connect(("127.0.0.1", PORT))
        self.peer = peer
        udp_port = PORT
        if self.udp is not None:
            # The router lets a connection carry traffic only once its UDP heartbeats are
            # answered: this fake answers them from its own port.
            self.udp.bind(("127.0.0.1", 0))
            self.udp.settimeout(0.2)
            udp_port = self.udp.getsockname()[1]
            threading.Thread(target=self._answer_heartbeats, daemon=True).start()
        self.hs = Handshake(HandshakeConfig(peer, udp_port=udp_port), outbound=True,
                            conn_id=random.getrandbits(64) if conn_id is None else conn_id)
        self.decoder = Decoder()
        self.inbox: list[ProtocolHeader | Message] = []
        self.eof = False
        self.control_keys: ControlKeys | None = None  # once the handshake accepted

    def _answer_heartbeats(self) -> None:
        assert self.udp is not None
        me = sleeve.peer_to_wire(str(self.peer.name))
        seq = 0
        while self.udp.fileno() != -1:
            try:
                data, addr = self.udp.recvfrom(65536)
                msg = sleeve.unpack_control(data)
            except (TimeoutError, sleeve.SleeveError):
                continue
            except OSError:
                return  # closed
            keys = self.control_keys
            if msg.kind == sleeve.HEARTBEAT and keys is not None:
                seq += 1
                with contextlib.suppress(OSError):
                    self.udp.sendto(sleeve.build_control(sleeve.HEARTBEAT_ACK, sender=me,
                                                         token=msg.token, key=keys.send,
                                                         seq=seq), addr)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, msg: Message) -> None:
        self.sock.sendall(encode(msg))

    def _pump(self, deadline: float) -> None:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.inbox += self.decoder.feed(data)

    def handshake(self, timeout: float = 5) -> Accepted | Refused:
        self.sock.sendall(self.hs.start())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.eof:
            while self.inbox:
                step = self.hs.receive(self.inbox.pop(0))
                if step.send:
                    self.sock.sendall(step.send)
                if isinstance(step.outcome, Accepted):
                    self.control_keys = connection_keys(step.outcome.connection_id, None)
                if step.outcome is not None:
                    return step.outcome
            self._pump(deadline)
        raise AssertionError("the router did not finish the handshake")

    def expect(self, match: Callable[[Any], bool], timeout: float = 5) -> Any:
        """The first message that matches (earlier ones are dropped); None on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while self.inbox:
                item = self.inbox.pop(0)
                if match(item):
                    return item
            if self.eof:
                return None
            self._pump(deadline)
        return None

    def closed_by_router(self, timeout: float) -> bool:
        self.expect(lambda _: False, timeout)
        return self.eof

    def close(self) -> None:
        self.sock.close()
        if self.udp is not None:
            self.udp.close()


def a_peer(nickname: str) -> Peer:
    return Peer(PeerName.random(), nickname, random.getrandbits(63) + 1)


def gossip(router: Router) -> dict[str, Any]:
    return router.actors()["gossip"]


def gossip_events(router: Router, *events: str) -> list[dict[str, Any]]:
    out = []
    log = router.weave("logs").stdout
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("actor") == "gossip" and rec.get("event") in events:
                out.append(rec)
    return out


@pytest.fixture
def mesh_router(router: Router) -> Iterator[Router]:
    router.weave("launch")
    yield router


@pytest.fixture
def fakes() -> Iterator[list[FakePeer]]:
    made: list[FakePeer] = []
    yield made
    for f in made:
        f.close()


@pytest.fixture
def events(mesh_router: Router) -> Iterator[zmq.Socket]:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"routes")
    sub.setsockopt(zmq.SUBSCRIBE, b"actor.ready")
    sub.connect(bus.Endpoints(mesh_router.run_dir).events)
    yield sub
    ctx.destroy(linger=0)


def next_event(sub: zmq.Socket, topic: str, match: Callable[[dict[str, Any]], bool],
               timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            got, data = sub.recv_multipart()
            if got.decode() != topic:
                continue
            last = bus.decode(data).body["data"]
            if match(last):
                return last
    raise AssertionError(f"no matching {topic} event in {timeout}s; last: {last!r}")


def connect(router: Router, fakes: list[FakePeer], peer: Peer, **kw: Any) -> FakePeer:
    fake = FakePeer(router, peer, **kw)
    fakes.append(fake)
    return fake


def test_gossip_from_a_peer_is_merged_into_routes_and_published(
        mesh_router: Router, fakes: list[FakePeer], events: zmq.Socket) -> None:
    p, q = a_peer("p"), a_peer("q")
    fake = connect(mesh_router, fakes, p, udp=True)
    acc = fake.handshake()
    assert isinstance(acc, Accepted)
    me = acc.remote.name
    # The router tells a new neighbour everything, its own link to us included.
    full = fake.expect(lambda m: isinstance(m, TopologyUpdate)
                       and any(r.name == me and r.connection(p.name) for r in m.records))
    assert full is not None
    fake.send(TopologyUpdate((
        PeerRecord(p.name, "p", p.uid, 1, tuple(sorted([
            Connection(me, "127.0.0.1:6783", True, True),
            Connection(q.name, "192.0.2.7:6783", True, True)]))),
        PeerRecord(q.name, "q", q.uid, 1, (Connection(p.name, "192.0.2.8:40000", True, False),)),
    )))
    routes = next_event(events, "routes", lambda d: d["unicast"].get(q.name) == p.name)
    assert routes["local"] == me and isinstance(routes["version"], int)
    assert fake.udp is not None
    assert routes["peers"][p.name]["udp"] == f"127.0.0.1:{fake.udp.getsockname()[1]}"
    assert routes["peers"][q.name] == {"nickname": "q", "uid": q.uid, "udp": None}
    assert routes["broadcast"][me] == [p.name]
    st = wait_for(lambda: (s := gossip(mesh_router)["status"]).get("routes", {}).get(q.name)
                  and s, what="status routes")
    assert {x["name"] for x in st["peers"]} == {me, p.name, q.name}
    assert st["routes"] == {p.name: p.name, q.name: p.name}
    # A restarted forwarder gets the routes at once, not at the next 2 s backstop.
    os.kill(mesh_router.actors()["forwarder"]["pid"], 9)
    next_event(events, "actor.ready", lambda d: d.get("name") == "forwarder", timeout=10)
    again = next_event(events, "routes", lambda d: True, timeout=0.3)
    assert again["unicast"] == routes["unicast"] and again["version"] >= routes["version"]


def test_a_peer_using_our_name_is_refused_with_a_reason(
        mesh_router: Router, fakes: list[FakePeer]) -> None:
    st = gossip(mesh_router)["status"]
    impostor = Peer(PeerName(st["peer"]["name"]), "impostor", st["peer"]["uid"] ^ 1)
    outcome = connect(mesh_router, fakes, impostor).handshake()
    assert isinstance(outcome, Refused) and outcome.reason == NAME_COLLISION
    refused = wait_for(lambda: gossip_events(mesh_router, "connection_refused"),
                       what="a logged refusal")
    assert refused[0]["reason"] == NAME_COLLISION


def test_connecting_to_itself_is_refused_once_and_not_retried(mesh_router: Router) -> None:
    # By address and by name (resolved off the actor's loop).
    targets = {f"127.0.0.1:{PORT}", f"localhost:{PORT}"}
    mesh_router.weave("connect", "127.0.0.1", "localhost")

    def parked() -> list[dict[str, Any]] | None:
        rows = [r for r in gossip(mesh_router)["status"]["connections"]
                if r["address"] in targets and r["state"] == "failed"]
        return rows if len(rows) == 2 else None

    for row in wait_for(parked, what="both self-connections to be parked"):
        assert CONNECTION_TO_SELF in row["info"] and "not retried" in row["info"], row
    time.sleep(3)  # a retry loop would show up as more refusals within the backoff interval
    refusals = [e for e in gossip_events(mesh_router, "connection_refused")
                if e["reason"] == CONNECTION_TO_SELF]
    assert 2 <= len(refusals) <= 4, refusals  # per target: the dialling and the accepting end


def test_two_connections_from_one_peer_settle_on_the_preferred_one(
        mesh_router: Router, fakes: list[FakePeer]) -> None:
    p = a_peer("p")
    first, second = connect(mesh_router, fakes, p, udp=True), connect(mesh_router, fakes, p,
                                                                       udp=True)
    a, b = first.handshake(), second.handshake()
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    keep = prefer(p, a.remote, ConnectionSide(True, a.connection_id),
                  ConnectionSide(True, b.connection_id))
    winner, loser = (first, second) if keep == 0 else (second, first)
    bye = loser.expect(lambda m: isinstance(m, Goodbye))
    assert bye is not None and bye.reason == DUPLICATE_CONNECTION
    assert loser.closed_by_router(3)
    assert winner.expect(lambda m: isinstance(m, Heartbeat), timeout=4) is not None
    # One connection left, carrying traffic once the forwarder's heartbeats are answered.
    wait_for(lambda: [r["state"] for r in gossip(mesh_router)["status"]["connections"]
                      if r["peer"] == p.name] == ["established"], what="one established row")


GARBAGE = {
    "random": os.urandom(64),
    "oversized": encode_header() + (2**31).to_bytes(4, "big"),  # far above the size limit
    "not-msgpack": encode_header() + b"\x00\x00\x00\x03\xc1\xc1\xc1",
    "no-hello": encode_header() + encode(Heartbeat(1)),  # a valid message, but out of turn
}


def test_bad_input_closes_only_that_connection_with_a_logged_reason(
        mesh_router: Router, fakes: list[FakePeer]) -> None:
    good = connect(mesh_router, fakes, a_peer("good"), udp=True)
    assert isinstance(good.handshake(), Accepted)
    pid = gossip(mesh_router)["pid"]
    for kind, garbage in GARBAGE.items():
        seen = len(gossip_events(mesh_router, "connection_closed", "connection_refused"))
        bad = connect(mesh_router, fakes, a_peer("bad"))
        bad.send_raw(garbage)
        with contextlib.suppress(WireError):  # what the router says back need not decode
            assert bad.closed_by_router(3), kind
        closed = wait_for(
            lambda seen=seen: gossip_events(mesh_router, "connection_closed",
                                            "connection_refused")[seen:],
            what=f"a logged reason for {kind}")
        assert closed[0]["address"].startswith("127.0.0.1:") and closed[0]["reason"], closed
        assert closed[0].get("remote") is None, closed
    assert gossip(mesh_router)["pid"] == pid
    assert good.expect(lambda m: isinstance(m, Heartbeat), timeout=4) is not None
    wait_for(lambda: [r["state"] for r in gossip(mesh_router)["status"]["connections"]]
             == ["established"], what="only the good connection, established")


def test_a_silent_peer_is_dropped_as_lost(mesh_router: Router, fakes: list[FakePeer]) -> None:
    p = a_peer("mute")
    fake = connect(mesh_router, fakes, p)
    assert isinstance(fake.handshake(), Accepted)
    assert fake.closed_by_router(14)
    lost = wait_for(lambda: gossip_events(mesh_router, "connection_lost"), what="connection_lost")
    assert lost[0]["remote"] == p.name and "no data" in lost[0]["reason"]
    assert p.name not in {x["name"] for x in gossip(mesh_router)["status"]["peers"]}


def test_a_stopping_router_says_goodbye(mesh_router: Router, fakes: list[FakePeer]) -> None:
    fake = connect(mesh_router, fakes, a_peer("p"))
    assert isinstance(fake.handshake(), Accepted)
    mesh_router.weave("stop")
    bye = fake.expect(lambda m: isinstance(m, Goodbye), timeout=10)
    assert bye is not None and "shutting down" in bye.reason


# -- strangers: forged gossip, floods, big announcements -------------------------------------------


def test_a_forged_record_at_the_largest_version_is_refused_and_gossip_stays_up(
        mesh_router: Router, fakes: list[FakePeer]) -> None:
    p, q = a_peer("p"), a_peer("q")
    attacker = connect(mesh_router, fakes, p, udp=True)
    bystander = connect(mesh_router, fakes, q, udp=True)
    acc = attacker.handshake()
    assert isinstance(acc, Accepted) and isinstance(bystander.handshake(), Accepted)
    me = acc.remote
    pid = gossip(mesh_router)["pid"]
    # One version msgpack can carry but nobody can increment: for a peer we know, and for the
    # router itself (which would try to outrank it).
    forged = [PeerRecord(q.name, "q", q.uid, 2**64 - 1),
              PeerRecord(me.name, "x", me.uid, 2**64 - 1)]
    attacker.send(TopologyUpdate(tuple(forged)))
    wait_for(lambda: gossip(mesh_router)["status"]["refused_records"] == 2,
             what="the forged records to be refused")
    # Both connections stay, carrying traffic once their UDP heartbeats are answered.
    wait_for(lambda: [r["state"] for r in gossip(mesh_router)["status"]["connections"]]
             == ["established"] * 2, what="both connections established")
    assert gossip(mesh_router)["pid"] == pid
    for fake in (attacker, bystander):  # nobody got the record passed on, both stay served
        got = fake.expect(lambda m: isinstance(m, Heartbeat)
                          or (isinstance(m, TopologyUpdate)
                              and any(r.version >= 2**63 for r in m.records)), timeout=4)
        assert isinstance(got, Heartbeat), got


def test_a_stranger_announcing_a_big_message_before_its_handshake_is_closed(
        mesh_router: Router, fakes: list[FakePeer]) -> None:
    fake = connect(mesh_router, fakes, a_peer("big"))
    fake.send_raw(encode_header() + (8 * 1024 * 1024).to_bytes(4, "big") + b"\x80" * 1000)
    with contextlib.suppress(WireError):
        assert fake.closed_by_router(3)
    closed = wait_for(lambda: gossip_events(mesh_router, "connection_closed"), what="the close")
    assert "exceeds" in closed[0]["reason"], closed


def test_one_source_may_hold_only_a_few_handshaking_connections(
        mesh_router: Router, fakes: list[FakePeer]) -> None:
    silent = []
    for _ in range(MAX_HANDSHAKING_PER_SOURCE):
        sock = ns_socket(mesh_router)
        sock.bind(("127.0.0.5", 0))
        sock.connect(("127.0.0.1", PORT))
        silent.append(sock)
    try:
        wait_for(lambda: len(gossip(mesh_router)["status"]["connections"])
                 >= MAX_HANDSHAKING_PER_SOURCE, what="the silent connections to be accepted")
        ninth = connect(mesh_router, fakes, a_peer("ninth"), source="127.0.0.5")
        with contextlib.suppress(WireError, OSError):
            assert ninth.closed_by_router(2)
        refused = wait_for(lambda: [e for e in gossip_events(mesh_router, "connection_refused")
                                    if e["reason"] == TOO_MANY_FROM_SOURCE], what="the refusal")
        assert refused[0]["address"].startswith("127.0.0.5:")
        other = connect(mesh_router, fakes, a_peer("other"), source="127.0.0.6")
        assert isinstance(other.handshake(), Accepted)
    finally:
        for sock in silent:
            sock.close()


def test_a_connection_flood_from_one_source_writes_a_few_log_lines(
        mesh_router: Router) -> None:
    for _ in range(200):
        sock = ns_socket(mesh_router)
        sock.bind(("127.0.0.7", 0))
        sock.connect(("127.0.0.1", PORT))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.close()
    wait_for(lambda: gossip(mesh_router)["status"]["suppressed_refusals"] >= 190,
             what="the refusals to be counted")
    lines = [e for e in gossip_events(mesh_router, "connection_closed", "connection_refused")
             if e.get("address", "").startswith("127.0.0.7:")]
    assert 1 <= len(lines) <= LOG_BURST + 1, lines


def test_a_stranger_trickling_its_handshake_is_closed_when_the_handshake_time_is_up(
        mesh_router: Router) -> None:
    sock = ns_socket(mesh_router)
    sock.settimeout(0.4)
    sock.connect(("127.0.0.1", PORT))
    hello = encode_header() + encode(Hello(PeerName.random(), "slow", 5, 6, False))
    started = time.monotonic()
    try:
        for byte in hello:  # every byte resets no clock: the handshake has one deadline
            sock.sendall(bytes([byte]))
            with contextlib.suppress(TimeoutError):
                if sock.recv(65536) == b"":
                    break
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    assert time.monotonic() - started < HANDSHAKE_TIMEOUT + 2
    closed = wait_for(lambda: [e for e in gossip_events(mesh_router, "connection_closed")
                               if e["reason"] == "handshake timed out"], what="the timeout")
    assert closed[0]["address"].startswith("127.0.0.1:")
