"""The gossip actor's ``routes`` event, decoded into what the data plane runs on.

The event (see :func:`weavenet.mesh.routes.forwarder_snapshot`) names peers by their
MAC-like names: ``peers`` (name -> {"udp": "host:port" or None, ...}), ``unicast``
(destination -> next hop) and ``broadcast`` (source -> next hops); a direct neighbour's entry
also has ``control``, the control keys of our TCP connection to it (hex, see
:mod:`weavenet.dataplane.control_auth`). The forwarder runs on wire
ids (:func:`weavenet.dataplane.sleeve.peer_to_wire`), so :func:`decode_route_update` converts
every name once here, never per datagram. Names that are not peer names are left out and
listed, so the actor can log them; a bad UDP address counts as none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from weavenet.dataplane.control_auth import ControlKeys, decode_keys
from weavenet.dataplane.forwarding import RouteTable
from weavenet.dataplane.path import Addr
from weavenet.dataplane.sleeve import peer_from_wire, peer_to_wire
from weavenet.runtime.address import parse_ipv4_endpoint


@dataclass(frozen=True)
class RouteUpdate:
    peers: dict[int, str]  # every peer the routes know: wire id -> name
    table: RouteTable  # for the forwarding core, on wire ids
    neighbours: dict[int, tuple[str, Addr | None]]  # direct ones: wire id -> name, UDP address
    bad_names: tuple[str, ...]  # repr() of each name that is not a peer name, as it appeared
    keys: dict[int, ControlKeys]  # neighbours' control keys: wire id -> keys


def decode_route_update(data: Mapping[str, Any], me: int) -> RouteUpdate:
    """Decode the event's data for our peer (wire id ``me``).

    A neighbour is a peer with a UDP address or any next hop, ourselves excluded. Raises
    AttributeError/TypeError where the event's shape is wrong (a list for a map, ...).
    """
    wire: dict[Any, int] = {}
    bad: list[str] = []

    def w(name: Any) -> int | None:
        if name not in wire:
            try:
                wire[name] = peer_to_wire(name)
            except (ValueError, AttributeError, TypeError):
                bad.append(repr(name))
                return None
        return wire[name]

    peers: dict[int, str] = {}
    udp: dict[int, Addr | None] = {}
    keys: dict[int, ControlKeys] = {}
    for name, info in (data.get("peers") or {}).items():
        pid = w(name)
        if pid is not None:
            peers[pid] = name
            udp[pid] = parse_ipv4_endpoint(info.get("udp")) if isinstance(info, dict) else None
            control = decode_keys(info.get("control")) if isinstance(info, dict) else None
            if control is not None:
                keys[pid] = control
    unicast = {}
    for dst, hop in (data.get("unicast") or {}).items():
        d, h = w(dst), w(hop)
        if d is not None and h is not None:
            unicast[d] = h
    broadcast = {}
    for src, hops in (data.get("broadcast") or {}).items():
        s = w(src)
        if s is not None:
            broadcast[s] = [h for h in map(w, hops) if h is not None]

    direct = {pid for pid, a in udp.items() if a is not None}
    direct.update(unicast.values())
    for hops in broadcast.values():
        direct.update(hops)
    direct.discard(me)
    neighbours = {pid: (peers.get(pid) or peer_from_wire(pid), udp.get(pid)) for pid in direct}
    return RouteUpdate(peers, RouteTable(unicast, broadcast), neighbours, tuple(bad),
                       {pid: k for pid, k in keys.items() if pid in neighbours})
