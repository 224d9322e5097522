"""Routers wired in memory: the gossip rules, routes for the forwarder, and status rows."""

from __future__ import annotations

import random
from typing import Any

from weavenet.dataplane.control_auth import connection_keys, decode_keys
from weavenet.mesh.connection import PeerConnection, new_handshake
from weavenet.mesh.connmaker import Source
from weavenet.mesh.handshake import HandshakeConfig
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.router import FULL_EXCHANGE_FANOUT, Router
from weavenet.mesh.topology import PeerRecord
from weavenet.mesh.wire import TopologyUpdate, decode_message

PORT = 6783


class NullLog:
    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass

    info = debug


def peer(i: int, uid: int = 1) -> Peer:
    return Peer(PeerName(f"02:00:00:00:00:{i:02x}"), f"host{i}", uid)


class Mesh:
    """Routers linked by in-memory connections; ``pump`` delivers what they send, in order."""

    def __init__(self) -> None:
        self.routers: dict[int, Router[PeerConnection]] = {}
        self.pairs: dict[int, tuple[int, PeerConnection]] = {}  # id(conn) -> far end
        self.queue: list[tuple[PeerConnection, bytes]] = []
        self.messages = 0

    def add(self, i: int, uid: int = 1) -> Router[PeerConnection]:
        self.routers[i] = Router(peer(i, uid), port=PORT, rng=random.Random(i), log=NullLog())
        return self.routers[i]

    def _conn(self, i: int, j: int, outbound: bool) -> PeerConnection:
        me = self.routers[i].me
        handshake, decoder = new_handshake(HandshakeConfig(me), None, outbound=outbound,
                                           conn_id=i * 100 + j)
        conn = PeerConnection(outbound, f"198.18.0.{j}:{PORT}", None, handshake, deadline=0.0,
                              decoder=decoder)
        conn.remote, conn.udp = self.routers[j].me, f"198.18.0.{j}:{PORT}"
        conn.control_keys = connection_keys(min(i, j) * 100 + max(i, j), None)
        conn.establish(0.0, None)
        return conn

    def connect(self, i: int, j: int, data_path: bool = True
                ) -> tuple[PeerConnection, PeerConnection]:
        ij, ji = self._conn(i, j, True), self._conn(j, i, False)
        self.pairs[id(ij)], self.pairs[id(ji)] = (j, ji), (i, ij)
        self.queue += self.routers[i].established(ij, data_path)
        self.queue += self.routers[j].established(ji, data_path)
        return ij, ji

    def disconnect(self, i: int, j: int) -> None:
        for a, b in ((i, j), (j, i)):
            conn = self.routers[a].by_peer[self.routers[b].me.name]
            conn.close()
            self.queue += self.routers[a].lost(conn, "connection lost")

    def pump(self) -> None:
        while self.queue:
            conn, body = self.queue.pop(0)
            if conn.closed:
                continue
            self.messages += 1
            dst, far = self.pairs[id(conn)]
            msg = decode_message(body)
            assert isinstance(msg, TopologyUpdate)
            router = self.routers[dst]
            improved = router.merge(far, msg.records)
            if improved:
                self.queue += router.topology_changed(improved, source=far)
            self.queue += router.answer_outdated(far, msg.records)


def line_of_three() -> Mesh:
    """1 - 2 - 3, gossip settled."""
    mesh = Mesh()
    for i in (1, 2, 3):
        mesh.add(i)
    mesh.connect(1, 2)
    mesh.connect(2, 3)
    mesh.pump()
    return mesh


def test_a_line_of_three_learns_routes_through_the_middle() -> None:
    one = line_of_three().routers[1]
    assert dict(one.routes.unicast) == {peer(2).name: peer(2).name, peer(3).name: peer(2).name}
    event = one.routes_event(0.0)
    assert event is not None and event["unicast"] == {str(peer(2).name): str(peer(2).name),
                                                      str(peer(3).name): str(peer(2).name)}
    assert event["peers"][str(peer(2).name)]["udp"] == f"198.18.0.2:{PORT}"
    assert event["peers"][str(peer(3).name)]["udp"] is None  # not a neighbour: via routes only
    # the neighbour's entry binds its UDP path's control datagrams to the connection
    assert decode_keys(event["peers"][str(peer(2).name)]["control"]) == connection_keys(102, None)
    assert "control" not in event["peers"][str(peer(3).name)]


def test_a_lost_link_takes_the_routes_through_it_away_everywhere() -> None:
    mesh = line_of_three()
    mesh.disconnect(2, 3)
    mesh.pump()
    assert peer(3).name not in mesh.routers[1].routes.unicast
    assert peer(3).name not in mesh.routers[1].peers  # garbage-collected: unreachable
    assert mesh.routers[1].peers.get(peer(2).name) == mesh.routers[2].peers.local_record


def test_the_routes_event_is_new_only_when_the_forwarders_view_changed() -> None:
    mesh = Mesh()
    one = mesh.add(1)
    mesh.add(2)
    first = one.routes_event(0.0)
    assert first is not None and first["version"] == 1
    assert one.routes_event(0.0) is None
    assert one.routes_event(0.0, force=True) == first
    mesh.connect(1, 2)
    mesh.pump()
    second = one.routes_event(0.0)
    assert second is not None and second["version"] == 2


def test_a_neighbour_gossiping_our_peers_old_record_is_answered_with_the_new_one() -> None:
    mesh = Mesh()
    for i in (1, 2):
        mesh.add(i)
    one_two, _ = mesh.connect(1, 2)
    mesh.pump()
    one = mesh.routers[1]
    stale = PeerRecord(peer(2).name, "host2", 1, 1)  # peer 2's record before it connected
    (answer,) = one.answer_outdated(one_two, (stale,))
    msg = decode_message(answer[1])
    assert isinstance(msg, TopologyUpdate)
    assert msg.records == (one.peers.get(peer(2).name),)


def test_improved_records_are_not_echoed_to_the_neighbour_that_sent_them() -> None:
    mesh = Mesh()
    for i in (1, 2, 3):
        mesh.add(i)
    one_two, _ = mesh.connect(1, 2)
    one_three, _ = mesh.connect(1, 3)
    mesh.pump()
    one = mesh.routers[1]
    news = PeerRecord(peer(2).name, "host2", 1, 99, one.peers[peer(2).name].connections)
    improved = one.merge(one_two, (news,))
    assert [conn for conn, _ in one.topology_changed(improved, source=one_two)] == [one_three]


def test_the_full_exchange_goes_to_a_few_random_neighbours() -> None:
    mesh = Mesh()
    hub = mesh.add(0)
    for i in range(1, FULL_EXCHANGE_FANOUT + 3):
        mesh.add(i)
        mesh.connect(0, i)
    mesh.pump()
    sends = hub.full_exchange()
    assert len(sends) == FULL_EXCHANGE_FANOUT
    assert len({id(conn) for conn, _ in sends}) == FULL_EXCHANGE_FANOUT
    assert Mesh().add(9).full_exchange() == []


def test_status_rows_leave_out_targets_a_connection_already_stands_for() -> None:
    mesh = Mesh()
    one = mesh.add(1)
    mesh.add(2)
    one.maker.add(["198.18.0.2", "198.18.0.3", "198.18.0.4"], Source.LAUNCH)
    one.maker.update_discovered({})
    one_two, _ = mesh.connect(1, 2)
    for target in one.maker.targets():
        if target.address.startswith("198.18.0.2"):
            target.peer = peer(2).name  # this address led to peer 2, which is linked
    rows = one.target_rows({"198.18.0.3:6783"}, now=0.0)
    assert [r["address"] for r in rows] == ["198.18.0.4:6783"]
    status = one.status(rows)
    assert status["peer"]["name"] == str(peer(1).name)
    assert [p["name"] for p in status["peers"]] == [str(peer(1).name), str(peer(2).name)]
    assert one_two.remote == peer(2)


def test_routes_use_a_link_only_while_its_udp_path_works_at_both_ends() -> None:
    """Three routers that all know each other; the 1-3 link's UDP path is not (or no longer)
    answered: 1 and 3 route through 2 until the path works again."""
    mesh = Mesh()
    for i in (1, 2, 3):
        mesh.add(i)
    mesh.connect(1, 2)
    mesh.connect(2, 3)
    c13, c31 = mesh.connect(1, 3, data_path=False)  # handshaken, UDP not yet answered
    mesh.pump()
    r1, r2, r3 = (mesh.routers[i] for i in (1, 2, 3))
    assert r1.routes.next_hop(r3.me.name) == r2.me.name
    mesh.queue += r1.data_path(c13, True)
    mesh.pump()
    assert r1.routes.next_hop(r3.me.name) == r2.me.name  # one end is not enough
    mesh.queue += r3.data_path(c31, True)
    mesh.pump()
    assert r1.routes.next_hop(r3.me.name) == r3.me.name
    assert r3.routes.next_hop(r1.me.name) == r1.me.name
    mesh.queue += r3.data_path(c31, False)  # e.g. UDP 6783 blocked: heartbeats unanswered
    mesh.pump()
    assert r1.routes.next_hop(r3.me.name) == r2.me.name
    assert r3.routes.next_hop(r1.me.name) == r2.me.name
    assert r1.data_path(c13, True) == []  # no change: nothing to gossip


def test_after_a_restart_routes_are_held_until_the_live_neighbours_are_routed_to_again() -> None:
    mesh = Mesh()
    one, _ = mesh.add(1, uid=2), mesh.add(2)  # host1's gossip restarted: a new incarnation
    one.hold_routes(until=5.0)
    assert one.routes_event(0.1) is None  # the forwarder has not said which paths work
    one.reconnect_to([peer(2).name])
    assert one.routes_event(0.2, force=True) is None  # nobody reconnected yet
    mesh.connect(1, 2)
    mesh.pump()
    event = one.routes_event(0.3)
    assert event is not None and str(peer(2).name) in event["unicast"]
    assert one.hold is None


def test_held_routes_are_released_when_the_hold_times_out_or_nothing_is_awaited() -> None:
    mesh = Mesh()
    one = mesh.add(1)
    one.hold_routes(until=5.0)
    assert one.routes_event(4.9) is None
    assert one.routes_event(5.0) is not None  # a neighbour that never came back
    one.hold_routes(until=5.0)
    one.reconnect_to([])  # a first launch: the forwarder knows no paths
    assert one.routes_event(0.0, force=True) is not None
