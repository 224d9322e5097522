"""An in-memory mesh: N peers gossiping through the real ``Peers``/``Routes`` code, no sockets.

Each peer follows the gossip rules of ``weavenet.mesh.router.Router`` (the gossip actor's core):
on a new connection it sends its full topology to the new neighbour and its own changed record to
the others; on receiving updates it merges, garbage collects, passes what improved on to its
neighbours (leaving out records a neighbour itself just sent), and answers a sender of outdated
records with its own. Time advances in synchronous rounds: everything sent in one round is
delivered in the next, in order per link, and a peer merges a round's messages together, so a
round is one network latency. Links are established at once (the UDP path is not simulated), and
there is no periodic full exchange: convergence must not need it.

Used by ``tests/unit/test_mesh_simulation.py`` and ``bench/mesh_convergence.py``.
"""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.routes import Routes
from weavenet.mesh.topology import PeerRecord, Peers, encode_record
from weavenet.runtime.address import format_host_port
from weavenet.runtime.defaults import PORT


@dataclass
class SimStats:
    rounds: int = 0
    messages: int = 0
    records: int = 0  # peer records carried, summed over messages
    bytes: int = 0  # msgpack size of those records (framing not included)

    def __iadd__(self, other: SimStats) -> SimStats:
        self.rounds += other.rounds
        self.messages += other.messages
        self.records += other.records
        self.bytes += other.bytes
        return self


@dataclass
class SimPeer:
    peer: Peer
    peers: Peers
    neighbours: set[PeerName] = field(default_factory=set)


class NotConverged(AssertionError):
    pass


class MeshSim:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random(0)
        self.nodes: dict[PeerName, SimPeer] = {}
        self._outbox: list[tuple[PeerName, PeerName, tuple[PeerRecord, ...]]] = []
        self._sizes: dict[tuple[PeerName, int, int], int] = {}
        self._cut: set[frozenset[PeerName]] = set()
        self.stats = SimStats()  # traffic since the last run_until_quiet

    # -- membership and links ----------------------------------------------------------------------
    def add_peer(self, nickname: str | None = None) -> PeerName:
        name = PeerName.random(self.rng)
        while name in self.nodes:
            name = PeerName.random(self.rng)
        peer = Peer(name, nickname or f"host{len(self.nodes)}", self.rng.getrandbits(63) + 1)
        self.nodes[name] = SimPeer(peer, Peers(peer))
        return name

    def connect(self, a: PeerName, b: PeerName) -> None:
        """A connection completes between a and b: both record it and gossip."""
        na, nb = self.nodes[a], self.nodes[b]
        if b in na.neighbours:
            return
        for here, there, outbound in ((na, nb, True), (nb, na, False)):
            here.neighbours.add(there.peer.name)
            here.peers.add_connection(
                there.peer, format_host_port(there.peer.nickname, PORT), outbound=outbound,
                established=True,
            )
        for here, there in ((na, nb), (nb, na)):
            self._send(here.peer.name, there.peer.name, here.peers.full_update())
            self._flood(here, {here.peer.name}, skip={there.peer.name})

    def disconnect(self, a: PeerName, b: PeerName) -> None:
        """The connection between a and b is lost; each end notices on its own."""
        for here, there in ((a, b), (b, a)):
            node = self.nodes.get(here)
            if node is None or there not in node.neighbours:
                continue
            node.neighbours.discard(there)
            node.peers.remove_connection(there)
            node.peers.garbage_collect()
            self._flood(node, {here})

    def remove_peer(self, name: PeerName) -> None:
        """The peer stops (crash or `weave stop`): its neighbours lose their connections."""
        node = self.nodes[name]
        for other in sorted(node.neighbours):
            self.disconnect(name, other)
        del self.nodes[name]
        self._outbox = [m for m in self._outbox if name not in (m[0], m[1])]

    def restart_peer(self, name: PeerName) -> PeerName:
        """The peer crashes and comes back at once as a new incarnation (same name, new UID),
        reconnecting to the same neighbours while their records of its old life still linger."""
        old = self.nodes[name]
        neighbours = sorted(old.neighbours)
        self.remove_peer(name)
        peer = Peer(name, old.peer.nickname, self.rng.getrandbits(63) + 1)
        self.nodes[name] = SimPeer(peer, Peers(peer))
        for other in neighbours:
            self.connect(name, other)
        return name

    def connected_half(self, start: PeerName) -> list[PeerName]:
        """Half of the peers, connected among themselves (BFS from ``start``): one side of a
        partition that leaves both halves whole."""
        order, seen, queue = [], {start}, deque([start])
        while queue and len(order) < len(self.nodes) // 2:
            at = queue.popleft()
            order.append(at)
            for nxt in sorted(self.nodes[at].neighbours):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return order

    def partition(self, side: Iterable[PeerName]) -> int:
        """Cut every link between ``side`` and the rest; return how many were cut."""
        group = set(side)
        cut = [
            (a, b)
            for a in sorted(group)
            for b in sorted(self.nodes[a].neighbours)
            if b not in group
        ]
        for a, b in cut:
            self._cut.add(frozenset((a, b)))
            self.disconnect(a, b)
        return len(cut)

    def heal(self) -> int:
        """Restore the links cut by ``partition`` (both ends reconnect)."""
        links = [tuple(sorted(pair)) for pair in self._cut]
        self._cut.clear()
        for a, b in sorted(links):
            if a in self.nodes and b in self.nodes:
                self.connect(a, b)
        return len(links)

    def build(self, n: int, degree: int = 3) -> list[PeerName]:
        """n new peers, each connecting to up to ``degree`` random earlier ones (as launching with
        a few known peers does); gossip is left pending for ``run_until_quiet``."""
        names: list[PeerName] = []
        for _ in range(n):
            name = self.add_peer()
            for other in self.rng.sample(names, min(degree, len(names))):
                self.connect(name, other)
            names.append(name)
        return names

    # -- gossip ------------------------------------------------------------------------------------
    def _send(self, src: PeerName, dst: PeerName, records: tuple[PeerRecord, ...]) -> None:
        if records:
            self._outbox.append((src, dst, records))

    def _flood(
        self,
        node: SimPeer,
        improved: set[PeerName],
        skip: set[PeerName] | frozenset[PeerName] = frozenset(),
        received: dict[PeerName, set[PeerRecord]] | None = None,
    ) -> None:
        records = node.peers.update_for(improved)
        for neighbour in sorted(node.neighbours - skip):
            already = received.get(neighbour, set()) if received else set()
            out = tuple(r for r in records if r not in already)
            self._send(node.peer.name, neighbour, out)

    def step(self) -> bool:
        """Deliver everything sent in the previous round; False if nothing was in flight."""
        inflight, self._outbox = self._outbox, []
        if not inflight:
            return False
        self.stats.rounds += 1
        inbox: dict[PeerName, list[tuple[PeerName, tuple[PeerRecord, ...]]]] = defaultdict(list)
        for src, dst, records in inflight:
            self.stats.messages += 1
            self.stats.records += len(records)
            self.stats.bytes += sum(self._size(r) for r in records)
            if dst in self.nodes and src in self.nodes[dst].neighbours:
                inbox[dst].append((src, records))
        for dst, messages in inbox.items():
            node = self.nodes[dst]
            received: dict[PeerName, set[PeerRecord]] = defaultdict(set)
            for src, records in messages:
                received[src].update(records)
            improved = node.peers.merge(r for _, records in messages for r in records)
            node.peers.garbage_collect()
            if improved:
                self._flood(node, improved, received=received)
            for src, records in messages:
                self._send(dst, src, node.peers.update_for(node.peers.outdated(records)))
        return True

    def full_exchange(self, fanout: int = 3) -> None:
        """The real routers' periodic backstop (every 10 s): each peer sends its whole view to a
        few random neighbours. It repairs what flooding alone can leave behind, e.g. a record an
        early garbage collection dropped while the record connecting it was still in flight."""
        for name in sorted(self.nodes):
            node = self.nodes[name]
            neighbours = sorted(node.neighbours)
            for other in self.rng.sample(neighbours, min(fanout, len(neighbours))):
                self._send(name, other, node.peers.full_update())

    def run_until_quiet(self, max_rounds: int = 10_000) -> SimStats:
        """Pump gossip until nothing is in flight; return the traffic this took."""
        self.stats = SimStats()
        while self.step():
            if self.stats.rounds >= max_rounds:
                raise NotConverged(f"gossip still flowing after {max_rounds} rounds")
        return self.stats

    def _size(self, record: PeerRecord) -> int:
        key = (record.name, record.version, record.uid)
        size = self._sizes.get(key)
        if size is None:
            size = self._sizes[key] = len(msgpack.packb(encode_record(record)))
        return size

    # -- checks ------------------------------------------------------------------------------------
    def components(self) -> list[set[PeerName]]:
        """Connected components of the real links (the ground truth)."""
        seen: set[PeerName] = set()
        out = []
        for start in sorted(self.nodes):
            if start in seen:
                continue
            comp = {start}
            queue = deque([start])
            while queue:
                for other in self.nodes[queue.popleft()].neighbours:
                    if other not in comp:
                        comp.add(other)
                        queue.append(other)
            seen |= comp
            out.append(comp)
        return out

    def topology_problems(self) -> list[str]:
        """Peers whose view differs from the true records of their component."""
        problems = []
        for comp in self.components():
            truth = {
                n: (self.nodes[n].peers.local_record.version, self.nodes[n].peer.uid) for n in comp
            }
            for name in sorted(comp):
                view = self.nodes[name].peers.fingerprint()
                if view != truth:
                    missing = len(truth.keys() - view.keys())
                    extra = len(view.keys() - truth.keys())
                    stale = sum(1 for k in truth.keys() & view.keys() if truth[k] != view[k])
                    problems.append(
                        f"{name}: {missing} missing, {extra} extra, {stale} stale records"
                    )
        return problems

    def route_problems(self, sample: Iterable[PeerName] | None = None) -> list[str]:
        """Follow unicast next hops between all pairs and flood a broadcast from each source in
        ``sample`` (default: all), each peer using the routes it computed itself."""
        routes = {n: Routes.calculate(node.peers) for n, node in self.nodes.items()}
        problems = []
        for comp in self.components():
            members = sorted(comp)
            sources = [s for s in (sample or members) if s in comp]
            for src in sources:
                for dst in members:
                    hop, steps = src, 0
                    while hop != dst and steps <= len(members):
                        nxt = routes[hop].next_hop(dst)
                        if nxt is None or nxt not in self.nodes[hop].neighbours:
                            break
                        hop, steps = nxt, steps + 1
                    if hop != dst:
                        problems.append(f"unicast {src}->{dst} stuck at {hop}")
                received = dict.fromkeys(members, 0)
                received[src] = 1
                queue = deque([src])
                while queue:
                    at = queue.popleft()
                    for nxt in routes[at].broadcast_next_hops(src):
                        received[nxt] = received.get(nxt, 0) + 1
                        if received[nxt] == 1:
                            queue.append(nxt)
                wrong = {n: c for n, c in received.items() if c != 1}
                if wrong:
                    problems.append(f"broadcast from {src}: receipts {wrong}")
        return problems

    def assert_converged(self, routes: bool = False) -> None:
        problems = self.topology_problems() + (self.route_problems() if routes else [])
        if problems:
            raise NotConverged(f"{len(problems)} problems, e.g. {problems[:3]}")
