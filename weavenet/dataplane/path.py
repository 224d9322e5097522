"""One neighbour's UDP path, sans-IO: its address, heartbeat liveness and path MTU.

The forwarder keeps a :class:`Path` per direct neighbour. The address is the one gossip
configured until the neighbour's own heartbeats show another (a peer behind NAT is reachable
at the address its packets come from, not the one it announced). Only a control datagram that
:meth:`Path.verify` accepts (tagged with the control keys of our TCP connection to that
neighbour, fresh: :mod:`weavenet.dataplane.control_auth`) may be passed to :meth:`Path.heard`,
so a spoofed heartbeat moves nothing, and PMTU probes (the frag test included) only ever go to
an address such a datagram came from. A path is ``ok`` while we
heard from the neighbour within :data:`PATH_OK_FOR` seconds, ``probing`` for
:data:`PROBING_FOR` seconds after it appeared without ever being heard, then ``unreachable``.
Path MTU discovery (:class:`weavenet.dataplane.pmtu.PathMtu`) (re)starts each time the path
(re)appears. ``now`` is always passed in: the tests drive it with a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from weavenet.dataplane.control_auth import CONTROL_NO_KEY, ControlAuth, ControlKeys
from weavenet.dataplane.pmtu import PathMtu, Probe
from weavenet.dataplane.sleeve import MAX_DATAGRAM, Control

Addr = tuple[str, int]

# A path is ok while we heard from the neighbour this recently: three heartbeat intervals of
# the forwarder (0.5 s), so one or two lost heartbeats do not count, while a dead path is
# known, published and routed around within 3 s.
PATH_OK_FOR = 1.5
PROBING_FOR = 5.0  # a never-heard path is "probing" this long, then "unreachable"

UDP_IP_OVERHEAD = 28  # IPv4 + UDP headers
UNDERLAY_MTU = 1500  # assumed where the kernel cannot tell us the route's MTU
# Before discovery, the largest datagram a 1500-byte underlay carries without fragmentation:
# the default container MTU (1410) is chosen so one frame fits it.
DEFAULT_DATAGRAM = UNDERLAY_MTU - UDP_IP_OVERHEAD
MIN_CEILING = 600  # a route MTU below this is not believed (PMTU discovery starts here at worst)


def ceiling_for(route_mtu: int) -> int:
    """The largest datagram PMTU discovery tries on a route with this link MTU."""
    return max(MIN_CEILING, min(MAX_DATAGRAM, route_mtu - UDP_IP_OVERHEAD))


class Path:
    """One neighbour's UDP path: address, liveness and path MTU. Sans-IO (``now`` injected)."""

    __slots__ = ("name", "wire", "addr", "configured", "learned", "pmtu", "last_heard",
                 "since", "seq", "tx_frames", "auth")

    def __init__(self, name: str, wire: int, configured: Addr | None, now: float,
                 keys: ControlKeys | None = None) -> None:
        self.name = name
        self.wire = wire
        self.configured = configured  # what gossip says
        self.learned: Addr | None = None  # what the neighbour's heartbeats showed
        self.addr = configured  # where we send: learned beats configured
        self.pmtu: PathMtu | None = None
        # The hot receive loop refreshes this directly (traffic proves the path as well as
        # heartbeats) once a heartbeat has set it: no method call per datagram.
        self.last_heard: float | None = None
        self.since = now
        self.seq = 0  # sequence number of the next FRAMES datagram on this path
        self.tx_frames = 0  # frames sent on this path: the traffic rate per neighbour
        self.auth = None if keys is None else ControlAuth(keys)

    def state(self, now: float) -> str:
        if self.last_heard is not None and now - self.last_heard <= PATH_OK_FOR:
            return "ok"
        if self.last_heard is None and now - self.since < PROBING_FOR:
            return "probing"
        return "unreachable"

    def set_configured(self, addr: Addr | None, keys: ControlKeys | None = None) -> None:
        """What gossip says: the address, and the control keys of the TCP connection (new
        keys, a new connection: a new replay window). Without keys the last ones stay: only
        the two ends of that connection ever knew them, so they are as unforgeable as before,
        and a path outliving its connection for a moment (a restarted gossip actor) keeps
        being heartbeated until the new connection's keys come."""
        self.configured = addr
        if self.learned is None:
            self.addr = addr
        if keys is not None and (self.auth is None or self.auth.keys != keys):
            self.auth = ControlAuth(keys)

    @property
    def send_key(self) -> bytes | None:
        """The key our control datagrams to this neighbour are tagged with; None before gossip
        gave one (then we send none: the neighbour would drop them)."""
        return None if self.auth is None else self.auth.keys.send

    def verify(self, msg: Control) -> str | None:
        """None if the control datagram ``msg`` comes from this neighbour, else the drop
        reason (see weavenet.dataplane.control_auth)."""
        return CONTROL_NO_KEY if self.auth is None else self.auth.verify(msg)

    def heard(self, addr: Addr, now: float, ceiling: Callable[[Addr], int]) -> bool:
        """A verified heartbeat (or its ack) from ``addr``; (re)start PMTU discovery when the
        path (re)appears, with ``ceiling(addr)`` as its upper bound. True when the path was not
        ``ok`` before: it just came up."""
        came_up = self.state(now) != "ok"
        fresh = self.last_heard is None or now - self.last_heard > PATH_OK_FOR
        if addr != self.addr:
            self.learned = addr  # what the neighbour's packets show beats what gossip said
            self.addr = addr
            fresh = True
        if fresh or self.pmtu is None:
            self.pmtu = PathMtu(ceiling(addr))
        self.last_heard = now
        return came_up

    def traffic(self, now: float) -> None:
        """Authentic traffic from the neighbour keeps a live path live (never revives one that
        no heartbeat has set up)."""
        if self.last_heard is not None:
            self.last_heard = now

    def due_probes(self, now: float) -> list[Probe]:
        """The PMTU probes to send now. Only a live path is probed: lost probes to a dead peer
        would shrink the estimate."""
        pm = self.pmtu
        if pm is None or self.addr is None or self.state(now) != "ok" or pm.next_deadline() > now:
            return []
        return pm.poll(now)

    def too_big(self, size: int, now: float) -> None:
        """The kernel refused a probe of ``size`` (EMSGSIZE: bigger than our own link)."""
        if self.pmtu is not None:
            self.pmtu.on_too_big(size, now)

    @property
    def piece_size(self) -> int:
        """The largest datagram the path carries without IP fragmentation."""
        return DEFAULT_DATAGRAM if self.pmtu is None else self.pmtu.pmtu

    @property
    def max_datagram(self) -> int:
        """The largest datagram we send on the path (bigger than ``piece_size`` where the
        path fragments or we split into pieces)."""
        return DEFAULT_DATAGRAM if self.pmtu is None else self.pmtu.max_datagram

    def describe(self, now: float, *, with_addr: bool = False) -> dict[str, Any]:
        pm = self.pmtu
        view: dict[str, Any] = {"state": self.state(now),
                                "pmtu": self.max_datagram if pm is None else pm.pmtu,
                                "frag_ok": bool(pm is not None and pm.frag_ok)}
        if with_addr:  # status only: the "paths" event is published when its view changes
            view["addr"] = None if self.addr is None else f"{self.addr[0]}:{self.addr[1]}"
            view["tx_frames"] = self.tx_frames
        return view


def describe_paths(paths: Iterable[Path], now: float, *,
                   with_addr: bool = False) -> dict[str, dict[str, Any]]:
    """Name -> :meth:`Path.describe`: the ``paths`` event (without addresses) and status."""
    return {p.name: p.describe(now, with_addr=with_addr) for p in paths}


def reconcile(paths: dict[int, Path], neighbours: Mapping[int, tuple[str, Addr | None]],
              now: float, keys: Mapping[int, ControlKeys] | None = None) -> None:
    """Make ``paths`` (wire id -> Path) hold exactly ``neighbours`` (wire id -> name and the
    address gossip configured): forget the others, add the new ones, and tell the kept ones
    the configured address and control ``keys`` (wire id -> keys; their learned state,
    liveness and PMTU stay)."""
    keys = keys or {}
    for wire in [w for w in paths if w not in neighbours]:
        del paths[wire]
    for wire, (name, configured) in neighbours.items():
        path = paths.get(wire)
        if path is None:
            paths[wire] = Path(name, wire, configured, now, keys.get(wire))
        else:
            path.set_configured(configured, keys.get(wire))
