"""One router's view of the mesh, sans-IO: the topology, the routes, the connection maker, and
the one established connection per peer.

The gossip actor owns the sockets. It tells the router when a connection is established or lost
and what gossip arrived; the router updates the topology and answers with the message bodies to
write, in order: pairs of a connection and an ``encode_body`` output, which the connection seals
or frames. After writing them the actor publishes ``routes_event()`` to the forwarder; that event
is computed then, so it reflects whatever closing a connection while writing changed.

Gossip rules (as weave's mesh): a new neighbour gets our full topology; improved records go to
every neighbour but the one they came from (unless our own record improved: we outranked what it
sent); a sender of outdated records is answered with ours; a few random neighbours get everything
periodically as the backstop for lost updates.

After a restart of the gossip actor the routes are held back (``hold_routes``): the forwarder
keeps forwarding on the routes it has while the new incarnation reconnects, rather than getting
empty routes from a topology that knows nobody yet (see ``RouteHold``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from weavenet.mesh.connection import PeerConnection
from weavenet.mesh.connmaker import ConnectionMaker, TargetState, discovery_candidates
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.routes import Routes, forwarder_snapshot
from weavenet.mesh.topology import PeerRecord, Peers
from weavenet.mesh.wire import TopologyUpdate, encode_body

FULL_EXCHANGE_FANOUT = 3

C = TypeVar("C", bound=PeerConnection)  # the actor's connection type, socket included


@dataclass
class RouteHold:
    """Routes held back until the neighbours whose UDP path worked before a restart are routed
    to again, or until ``until``. ``waiting`` is None while we do not know them yet (the
    forwarder has not answered): nothing is released before it answers or time runs out."""

    until: float
    waiting: frozenset[PeerName] | None = None

    def released(self, routes: Routes, now: float) -> bool:
        if now >= self.until:
            return True
        return self.waiting is not None and all(n in routes.unicast for n in self.waiting)


class Router(Generic[C]):
    def __init__(self, me: Peer, *, port: int, rng: random.Random, log: Any) -> None:
        self.me = me
        self.port = port
        self.rng = rng
        self.log = log
        self.peers = Peers(me)
        self.routes = Routes.calculate(self.peers)
        self.maker = ConnectionMaker(rng=rng, default_port=port)
        self.by_peer: dict[PeerName, C] = {}  # the one established link per peer
        self.routes_version = 0
        self._snapshot: dict[str, Any] | None = None
        self.hold: RouteHold | None = None

    def hold_routes(self, until: float) -> None:
        """Publish no routes until the neighbours named by ``reconnect_to`` are routed to again,
        or until ``until``: the forwarder keeps the routes of our previous incarnation."""
        self.hold = RouteHold(until)

    def reconnect_to(self, neighbours: Iterable[PeerName]) -> None:
        """The neighbours to be routed to before a held routing is released (the forwarder's
        live paths). Without a hold, nothing to do."""
        if self.hold is not None:
            self.hold.waiting = frozenset(neighbours) - {self.me.name}

    # -- connections ----------------------------------------------------------------------------
    def established(self, conn: C, data_path: bool) -> list[tuple[C, bytes]]:
        """``conn`` is now the link to its remote: record it and tell everyone. It carries
        traffic (counts as established in the topology, so routes use it) only while
        ``data_path`` holds: UDP heartbeats are answered both ways (see ``data_path``)."""
        remote = conn.remote
        assert remote is not None
        self.by_peer[remote.name] = conn
        self.maker.peer_connected(remote.name)
        self.peers.add_connection(remote, conn.address, outbound=conn.outbound,
                                  established=data_path)
        full = (conn, encode_body(TopologyUpdate(self.peers.full_update())))
        return [full, *self.topology_changed({self.me.name}, source=None)]

    def data_path(self, conn: C, up: bool) -> list[tuple[C, bytes]]:
        """The UDP path to ``conn``'s remote came up or went down (the forwarder's heartbeats):
        the connection counts as established in our record only while it is up, and routes
        need both ends to say so, so traffic moves to other peers within one gossip round."""
        remote = conn.remote
        if remote is None or self.by_peer.get(remote.name) is not conn:
            return []
        if not self.peers.add_connection(remote, conn.address, outbound=conn.outbound,
                                         established=up):
            return []
        return self.topology_changed({self.me.name}, source=None)

    def lost(self, conn: C, reason: str, relaunching: bool = False) -> list[tuple[C, bytes]]:
        """The link to ``conn``'s remote is gone (no other connection replaces it);
        ``relaunching``: the remote said it is shutting down (see ConnectionMaker)."""
        remote = conn.remote
        assert remote is not None
        del self.by_peer[remote.name]
        self.maker.peer_disconnected(remote.name, reason, relaunching)
        self.peers.remove_connection(remote.name)
        return self.topology_changed({self.me.name}, source=None)

    # -- gossip ---------------------------------------------------------------------------------
    def merge(self, conn: C, records: Iterable[PeerRecord]) -> set[PeerName]:
        """Fold received records in; the names that improved (pass them to ``topology_changed``)."""
        improved = self.peers.merge(records)
        if improved:
            self.log.debug("topology_changed", via=conn.address,
                           improved=sorted(str(n) for n in improved))
        return improved

    def answer_outdated(self, conn: C,
                        records: tuple[PeerRecord, ...]) -> list[tuple[C, bytes]]:
        """The sender gossiped records older than ours (e.g. a restarted peer's new, low-version
        incarnation on one side and its old record on the other): answer with what we hold."""
        outdated = self.peers.outdated(records)
        if outdated and conn.remote is not None and self.by_peer.get(conn.remote.name) is conn:
            return [(conn, encode_body(TopologyUpdate(self.peers.update_for(outdated))))]
        return []

    def topology_changed(self, improved: set[PeerName],
                         source: C | None) -> list[tuple[C, bytes]]:
        """Pass improved records on, then recompute everything that derives from the topology."""
        gone = self.peers.garbage_collect()
        if gone:
            self.log.debug("peers_forgotten", peers=sorted(str(n) for n in gone))
        sends: list[tuple[C, bytes]] = []
        records = self.peers.update_for(improved)
        if records:
            data = encode_body(TopologyUpdate(records))
            # The sender has these records already, unless one is ours (we outranked it).
            sends = [(conn, data) for conn in self.by_peer.values()
                     if conn is not source or self.me.name in improved]
        self.maker.update_discovered(discovery_candidates(self.peers, self.port))
        self.routes = Routes.calculate(self.peers)
        return sends

    def full_exchange(self) -> list[tuple[C, bytes]]:
        """The backstop for lost or GC-raced updates: everything to a few random neighbours."""
        neighbours = list(self.by_peer.values())
        if not neighbours:
            return []
        data = encode_body(TopologyUpdate(self.peers.full_update()))
        chosen = self.rng.sample(neighbours, min(FULL_EXCHANGE_FANOUT, len(neighbours)))
        return [(conn, data) for conn in chosen]

    # -- routes to the forwarder ----------------------------------------------------------------
    def routes_event(self, now: float, force: bool = False) -> dict[str, Any] | None:
        """The "routes" event if the forwarder's view changed (or ``force``), else None; None
        while the routes are held (see ``hold_routes``)."""
        if self.hold is not None:
            if not self.hold.released(self.routes, now):
                return None
            self.log.info("routes_released", waited_for=sorted(map(str, self.hold.waiting or ())),
                          timed_out=now >= self.hold.until)
            self.hold = None
        udp = {name: c.udp for name, c in self.by_peer.items() if c.udp}
        keys = {name: c.control_keys for name, c in self.by_peer.items() if c.control_keys}
        snap = forwarder_snapshot(self.peers, self.routes, udp, keys)
        old = self._snapshot
        if snap != old:
            self.routes_version += 1
            self._snapshot = snap
            if old is None or (old["unicast"], old["broadcast"]) != (
                    snap["unicast"], snap["broadcast"]):
                self.log.info("routes_changed", version=self.routes_version,
                              peers=len(snap["peers"]), unicast=len(snap["unicast"]),
                              neighbours=len(self.by_peer))
        elif not force:
            return None
        return {"version": self.routes_version, **snap}

    # -- status ---------------------------------------------------------------------------------
    def target_rows(self, live: set[str | None], now: float) -> list[dict[str, Any]]:
        """Status rows for the targets that no connection (``live``: their targets) stands for."""
        rows = []
        for t in self.maker.targets():
            if t.address in live or t.state in (TargetState.CONNECTED, TargetState.CONNECTING):
                continue
            if t.peer is not None and t.peer in self.by_peer:
                continue  # reached through another connection (e.g. the remote dialled us)
            rows.append(t.status_row(now))
        return rows

    def status(self, connections: list[dict[str, Any]]) -> dict[str, Any]:
        reach = self.peers.reachable()
        return {
            "peer": {"name": str(self.me.name), "nickname": self.me.nickname, "uid": self.me.uid},
            "peers": [
                {"name": str(name), "nickname": rec.nickname, "uid": rec.uid,
                 "connections": len(rec.connections),
                 # what this peer says it is connected to: the edges of the topology
                 "links": [{"peer": str(c.peer), "address": c.address,
                            "outbound": c.outbound, "established": c.established}
                           for c in rec.connections]}
                for name, rec in sorted(self.peers.records().items()) if name in reach
            ],
            "connections": connections,
            "routes": {str(d): str(h) for d, h in sorted(self.routes.unicast.items())},
        }
