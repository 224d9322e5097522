"""MacCache: which peer each MAC address lives at, learned from source MACs.

Sans-IO: every call takes ``now`` (seconds on a monotonic clock) so the forwarder reads the
clock once per batch and tests drive time by hand. Entries expire ``max_age`` seconds after
the MAC was last seen (weave used 10 minutes) and move *immediately* when the MAC shows up at
another peer, so a container moved to another host is reachable as soon as it speaks.

Peers are opaque hashable values (the forwarder uses whatever the routes use).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from enum import IntEnum

DEFAULT_MAX_AGE = 600.0
DEFAULT_MAX_ENTRIES = 65536


class Learned(IntEnum):
    REFRESHED = 0  # already known at this peer
    NEW = 1
    MOVED = 2  # was at another peer


class MacCache:
    def __init__(
        self, max_age: float = DEFAULT_MAX_AGE, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if max_age <= 0 or max_entries <= 0:
            raise ValueError("max_age and max_entries must be positive")
        self.max_age = max_age
        self.max_entries = max_entries
        # mac -> [peer, last_seen]; a mutable pair so refreshing a known MAC (the common case,
        # once per frame) is one store and allocates nothing but the float.
        self._table: dict[bytes, list] = {}
        self.evictions = 0
        self._last_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, mac: bytes) -> bool:
        return mac in self._table

    def learn(self, mac: bytes, peer: Hashable, now: float) -> Learned:
        entry = self._table.get(mac)
        if entry is not None:
            entry[1] = now
            if entry[0] == peer:
                return Learned.REFRESHED
            entry[0] = peer
            return Learned.MOVED
        if len(self._table) >= self.max_entries:
            self._make_room(now)
        self._table[bytes(mac)] = [peer, now]
        return Learned.NEW

    def lookup(self, mac: bytes, now: float) -> Hashable | None:
        """The peer ``mac`` was last seen at, or None if unknown or expired."""
        entry = self._table.get(mac)
        if entry is None:
            return None
        if now - entry[1] > self.max_age:
            del self._table[mac]
            return None
        return entry[0]

    def entry(self, mac: bytes) -> tuple[Hashable, float] | None:
        """(peer, last_seen) without expiry checks, for policies that look at freshness."""
        e = self._table.get(mac)
        return None if e is None else (e[0], e[1])

    def expire(self, now: float) -> list[tuple[bytes, Hashable]]:
        """Drop entries not seen for more than ``max_age``; returns what was dropped."""
        cutoff = now - self.max_age
        gone = [(mac, e[0]) for mac, e in self._table.items() if e[1] < cutoff]
        for mac, _ in gone:
            del self._table[mac]
        return gone

    def delete_peer(self, peer: Hashable) -> list[bytes]:
        """Forget every MAC at ``peer`` (the peer became unreachable or restarted)."""
        gone = [mac for mac, e in self._table.items() if e[0] == peer]
        for mac in gone:
            del self._table[mac]
        return gone

    def items(self) -> Iterator[tuple[bytes, Hashable, float]]:
        """(mac, peer, last_seen) of every entry, expired or not."""
        for mac, (peer, seen) in self._table.items():
            yield mac, peer, seen

    def _make_room(self, now: float) -> None:
        # A full sweep is O(n); under a flood of new MACs do it at most once a second.
        if now - self._last_sweep >= 1.0:
            self._last_sweep = now
            if self.expire(now):
                return
        # Still full: evict the MAC inserted longest ago. It is relearned from its next frame
        # and until then frames to it are flooded, which is correct, only slower.
        oldest = next(iter(self._table))
        del self._table[oldest]
        self.evictions += 1
