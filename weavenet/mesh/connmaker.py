"""ConnectionMaker: which addresses to dial, and when.

Targets come from three sources: the ``weave launch`` arguments, ``weave connect`` at run time, and
addresses discovered in the topology. A target is dialled at once, then after each failure again
after a random delay in [i/2, 3i/2], where i starts at 2 s and grows x1.5 up to a cap (~2 min);
the randomness keeps a mesh that lost a link from redialling in lockstep. A peer that said it is
shutting down is probably being relaunched (``weave stop`` + ``weave launch``): it is redialled
every ``QUICK_RETRY`` seconds for ``QUICK_FOR`` seconds, so it is back as soon as it listens.
Permanent failures (dialling ourselves, a name collision, a password or encryption mismatch) park
the target until the user names it again. A target that leads to a peer we are already connected
to (by whatever connection, inbound included) is not dialled.

Sans-IO: the actor asks ``due(now)`` for addresses to dial on every tick, reports
``connected``/``failed``, and tells ``peer_connected``/``peer_disconnected``; ``next_due()`` says
when ``due`` will next have something.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from weavenet.mesh.peer import PeerName
from weavenet.mesh.topology import Peers
from weavenet.runtime.address import format_host_port, normalize, parse_host_port
from weavenet.runtime.defaults import PORT as DEFAULT_PORT

INITIAL_INTERVAL = 2.0
BACKOFF_FACTOR = 1.5
MAX_INTERVAL = 120.0
QUICK_RETRY = 0.25
QUICK_FOR = 10.0


class Source(enum.Enum):
    LAUNCH = "launch"  # from the command line: kept until forgotten
    CONNECT = "connect"  # from `weave connect`: kept until forgotten
    DISCOVERED = "discovered"  # from the topology: kept while the topology mentions it


class TargetState(enum.Enum):
    WAITING = "waiting"  # will dial at next_try
    CONNECTING = "connecting"  # dial handed to the actor
    CONNECTED = "connected"  # reached `peer`, which is connected
    FAILED = "failed"  # last attempt failed; will retry at next_try
    REFUSED = "refused"  # permanent failure: not retried until named again


@dataclass
class Target:
    address: str
    sources: set[Source]
    state: TargetState = TargetState.WAITING
    next_try: float = 0.0
    interval: float = 0.0  # 0 until the first failure
    attempts: int = 0
    last_error: str | None = None
    peer: PeerName | None = None  # who this address led to (or, if discovered, should lead to)
    since: float = 0.0  # when the state last changed
    quick_until: float = 0.0  # redialled every QUICK_RETRY until then (a relaunching peer)

    def status_row(self, now: float) -> dict[str, Any]:
        """A ``weave status`` row for a target not (yet) backed by a live connection."""
        if self.state is TargetState.REFUSED:
            state, info = "failed", f"{self.last_error} (not retried)"
        elif self.state is TargetState.FAILED:
            state = "failed"
            info = f"{self.last_error}, retry in {max(0.0, self.next_try - now):.0f}s"
        elif self.last_error:
            state, info = "retrying", self.last_error
        else:
            state, info = "connecting", None
        return {"address": self.address, "peer": str(self.peer) if self.peer else None,
                "nickname": None, "state": state, "info": info, "direction": "outbound",
                "reason": self.last_error or None}


def discovery_candidates(peers: Peers, default_port: int = DEFAULT_PORT) -> dict[str, PeerName]:
    """Dialable addresses of peers we know of but are not directly connected to.

    An outbound connection's address is what its owner dialled, so others can dial it too; for an
    inbound one only the host is useful (the port is the remote's ephemeral one), so we assume
    the default port, as weave does.
    """
    local = peers.local_record
    direct = {c.peer for c in local.connections} | {local.name}
    out: dict[str, PeerName] = {}
    for rec in peers.records().values():
        for conn in rec.connections:
            if conn.peer in direct:
                continue
            try:
                if conn.outbound:
                    address = normalize(conn.address, default_port)
                else:
                    host = parse_host_port(conn.address, default_port)[0]
                    address = format_host_port(host, default_port)
            except ValueError:
                continue
            out.setdefault(address, conn.peer)
    return out


class ConnectionMaker:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        initial_interval: float = INITIAL_INTERVAL,
        factor: float = BACKOFF_FACTOR,
        max_interval: float = MAX_INTERVAL,
        default_port: int = DEFAULT_PORT,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self.initial_interval = initial_interval
        self.factor = factor
        self.max_interval = max_interval
        self.default_port = default_port
        self._targets: dict[str, Target] = {}
        self._connected_peers: set[PeerName] = set()

    # targets
    def add(self, addresses: Iterable[str], source: Source = Source.CONNECT) -> list[str]:
        """Add targets (dialled at once); naming a refused or failing target retries it now."""
        now = self._clock()
        added = []
        for raw in addresses:
            address = normalize(raw, self.default_port)
            target = self._targets.get(address)
            if target is None:
                target = self._targets[address] = Target(address, {source}, since=now)
            else:
                target.sources.add(source)
            if source is not Source.DISCOVERED and target.state in (
                TargetState.REFUSED,
                TargetState.FAILED,
            ):
                self._reset(target, now)
            added.append(address)
        return added

    def forget(self, addresses: Iterable[str]) -> list[str]:
        """Drop user-named targets (an already open connection is the actor's to close)."""
        forgotten = []
        for raw in addresses:
            address = normalize(raw, self.default_port)
            target = self._targets.get(address)
            if target is None:
                continue
            target.sources -= {Source.LAUNCH, Source.CONNECT}
            if not target.sources:
                del self._targets[address]
            forgotten.append(address)
        return forgotten

    def update_discovered(self, candidates: Mapping[str, PeerName]) -> None:
        """Replace the discovered targets with ``candidates`` ({address: peer it should reach})."""
        now = self._clock()
        for address, target in list(self._targets.items()):
            if Source.DISCOVERED in target.sources and address not in candidates:
                target.sources.discard(Source.DISCOVERED)
                if not target.sources:
                    del self._targets[address]
        for address, peer in candidates.items():
            target = self._targets.get(address)
            if target is None:
                self._targets[address] = Target(address, {Source.DISCOVERED}, peer=peer, since=now)
            else:
                target.sources.add(Source.DISCOVERED)
                if target.peer is None:
                    target.peer = peer

    # scheduling
    def due(self, now: float | None = None) -> list[str]:
        """Addresses to dial now; they move to CONNECTING until reported back."""
        now = self._clock() if now is None else now
        out = []
        for target in self._targets.values():
            if target.state not in (TargetState.WAITING, TargetState.FAILED):
                continue
            if target.peer is not None and target.peer in self._connected_peers:
                continue
            if target.next_try <= now:
                target.state = TargetState.CONNECTING
                target.attempts += 1
                target.since = now
                out.append(target.address)
        return sorted(out)

    def next_due(self) -> float | None:
        """When ``due`` will next return something (None: nothing scheduled)."""
        times = [
            t.next_try
            for t in self._targets.values()
            if t.state in (TargetState.WAITING, TargetState.FAILED)
            and (t.peer is None or t.peer not in self._connected_peers)
        ]
        return min(times, default=None)

    # outcomes
    def connected(self, address: str, peer: PeerName) -> None:
        """A dial to ``address`` reached ``peer`` (even if the connection was then dropped as a
        duplicate: the peer is connected either way)."""
        target = self._targets.get(normalize(address, self.default_port))
        self._connected_peers.add(peer)
        if target is None:
            return
        target.state = TargetState.CONNECTED
        target.peer = peer
        target.interval = 0.0
        target.quick_until = 0.0
        target.last_error = None
        target.since = self._clock()

    def failed(self, address: str, reason: str, permanent: bool = False) -> None:
        target = self._targets.get(normalize(address, self.default_port))
        if target is None:
            return
        now = self._clock()
        target.last_error = reason
        target.since = now
        if permanent:
            target.state = TargetState.REFUSED
            return
        target.state = TargetState.FAILED
        if now < target.quick_until:
            target.next_try = now + QUICK_RETRY
            return
        target.interval = (
            self.initial_interval
            if target.interval == 0
            else min(target.interval * self.factor, self.max_interval)
        )
        target.next_try = now + self._jitter(target.interval)

    def peer_connected(self, peer: PeerName) -> None:
        """Any connection to ``peer`` completed its handshake (inbound ones too)."""
        self._connected_peers.add(peer)

    def peer_disconnected(self, peer: PeerName, reason: str = "connection lost",
                          relaunching: bool = False) -> None:
        """The last connection to ``peer`` is gone: addresses that led there are dialled again
        after a short random delay, so both ends do not redial at the same instant;
        ``relaunching`` (it said it is shutting down): every QUICK_RETRY for a while."""
        self._connected_peers.discard(peer)
        now = self._clock()
        for target in self._targets.values():
            if target.peer != peer:
                continue
            if relaunching:  # a dial in progress that fails is retried quickly too
                target.quick_until = now + QUICK_FOR
            # a WAITING one was not dialled while another connection (inbound) reached the
            # peer: it is due already, unless the peer is relaunching (then: not before it
            # listens again)
            if target.state is TargetState.CONNECTED or (
                    relaunching and target.state is TargetState.WAITING):
                target.state = TargetState.WAITING
                target.last_error = reason
                target.interval = 0.0
                target.next_try = now + (QUICK_RETRY if relaunching
                                         else self._jitter(self.initial_interval))
                target.since = now

    def _reset(self, target: Target, now: float) -> None:
        target.state = TargetState.WAITING
        target.interval = 0.0
        target.next_try = now

    def _jitter(self, interval: float) -> float:
        return self._rng.uniform(interval / 2, interval * 3 / 2)

    # reporting
    def targets(self) -> Collection[Target]:
        return list(self._targets.values())
