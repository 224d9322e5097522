"""Routes: where to send a frame next, computed from the merged topology.

Only connections that *both* ends report as established count: a connection one side has
already dropped (or not yet accepted) must not carry frames. Both computations are
breadth-first searches that visit neighbours in peer-name order, so they are deterministic: any
two peers holding the same records compute the same trees.

- Unicast: the first hop on a shortest path from us to each reachable peer.
- Broadcast: for each source S, the shortest-path tree rooted at S; our next hops for a broadcast
  from S are our children in that tree. Every peer computes the same tree for S, so on a stable
  topology each peer receives each broadcast exactly once, from its parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from weavenet.dataplane.control_auth import ControlKeys, encode_keys
from weavenet.mesh.peer import PeerName
from weavenet.mesh.topology import PeerRecord, Peers

_NO_PARENT = -1


def established_graph(records: Mapping[PeerName, PeerRecord]) -> dict[PeerName, list[PeerName]]:
    """Adjacency over symmetric established connections, neighbours sorted by name."""
    est = {
        name: {c.peer for c in rec.connections if c.established} for name, rec in records.items()
    }
    graph: dict[PeerName, list[PeerName]] = {name: [] for name in sorted(records)}
    # Visiting owners in name order appends every neighbour list in name order, no sort needed.
    for name in graph:
        for other in sorted(est[name]):
            if other > name and other in est and name in est[other]:
                graph[name].append(other)
                graph[other].append(name)
    return graph


def _bfs(adj: list[list[int]], root: int) -> tuple[list[int], list[int]]:
    """Parents in the shortest-path tree from ``root`` and the visiting order (root first)."""
    parent = [_NO_PARENT] * len(adj)
    parent[root] = root
    order = [root]
    for node in order:  # the list grows while we walk it: a FIFO queue without popping
        for other in adj[node]:
            if parent[other] == _NO_PARENT:
                parent[other] = node
                order.append(other)
    return parent, order


@dataclass(frozen=True)
class Routes:
    """Next hops from ``local``'s point of view.

    ``unicast[dst]`` is the neighbour to send to for ``dst`` (absent: unreachable).
    ``broadcast[src]`` are the neighbours to pass a broadcast from ``src`` on to (our own
    broadcasts included under ``src == local``; absent or empty: deliver locally only).
    """

    local: PeerName
    unicast: Mapping[PeerName, PeerName]
    broadcast: Mapping[PeerName, tuple[PeerName, ...]]

    @classmethod
    def calculate(cls, peers: Peers) -> Routes:
        return cls.from_records(peers.local_name, peers.records())

    @classmethod
    def from_records(cls, local: PeerName, records: Mapping[PeerName, PeerRecord]) -> Routes:
        graph = established_graph(records)
        if local not in graph:
            return cls(local, {}, {})
        names = list(graph)
        index = {name: i for i, name in enumerate(names)}
        adj = [[index[o] for o in graph[name]] for name in names]
        me = index[local]

        parent, order = _bfs(adj, me)
        first_hop = [_NO_PARENT] * len(names)
        unicast: dict[PeerName, PeerName] = {}
        # BFS order guarantees a parent's first hop is known before its children's.
        for i in order[1:]:
            first_hop[i] = i if parent[i] == me else first_hop[parent[i]]
            unicast[names[i]] = names[first_hop[i]]

        broadcast: dict[PeerName, tuple[PeerName, ...]] = {}
        # Only sources in our component can send us anything.
        for src in order:
            tree = parent if src == me else _bfs(adj, src)[0]
            broadcast[names[src]] = tuple(names[o] for o in adj[me] if tree[o] == me)
        return cls(local, unicast, broadcast)

    def next_hop(self, dst: PeerName) -> PeerName | None:
        return self.unicast.get(dst)

    def broadcast_next_hops(self, src: PeerName) -> tuple[PeerName, ...]:
        return self.broadcast.get(src, ())

    def as_dict(self) -> dict[str, Any]:
        return {
            "unicast": {str(d): str(h) for d, h in sorted(self.unicast.items())},
            "broadcast": {str(s): [str(h) for h in hs] for s, hs in sorted(self.broadcast.items())},
        }


def forwarder_snapshot(
    peers: Peers, routes: Routes, udp_addrs: Mapping[PeerName, str] | None = None,
    control_keys: Mapping[PeerName, ControlKeys] | None = None,
) -> dict[str, Any]:
    """The plain-dict view the gossip actor publishes to the forwarder.

    ``udp_addrs`` are the sleeve addresses of direct neighbours, which only the gossip actor knows
    (each connection's remote IP with the UDP port its hello advertised); other peers are reached
    through ``unicast``/``broadcast``. ``control_keys`` are the control keys of each direct
    neighbour's connection (``control``, see ``weavenet.dataplane.control_auth``).
    """
    udp = udp_addrs or {}
    keys = control_keys or {}
    reach = peers.reachable()
    out: dict[str, Any] = {}
    for name, rec in sorted(peers.records().items()):
        if name in reach:
            out[str(name)] = {"nickname": rec.nickname, "uid": rec.uid, "udp": udp.get(name)}
            if name in keys:
                out[str(name)]["control"] = encode_keys(keys[name])
    return {"local": str(peers.local_name), "peers": out, **routes.as_dict()}
