"""Strangers on the underlay: how many connections one source may hold open before its handshake,
and how much its refusals may write to our log.

Without a password anyone who reaches TCP 6783 can connect, so one source flooding connections
must neither take every slot from real peers (``Admission``: at most a few handshaking inbound
connections per source address, besides the overall limit) nor fill the disk with one log line
per refusal (``RefusalLog``: a small burst per source, then one line per interval, the rest
counted). Sans-IO: addresses are plain strings, time comes in as ``now``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

MAX_HANDSHAKING_PER_SOURCE = 8
TOO_MANY_FROM_SOURCE = "too many connections from this address"
TOO_MANY_CONNECTIONS = "too many connections"
LOG_BURST = 5  # lines a source may cause at once (a few failed attempts stay visible)
LOG_INTERVAL = 10.0  # then one line per this many seconds
MAX_TRACKED_SOURCES = 1024


class Admission:
    """Decides, one accepted socket at a time, whether a new inbound connection may start its
    handshake. Built per accept round from the connections still handshaking, so it never
    drifts from the truth."""

    def __init__(self, handshaking_hosts: list[str], total: int, max_total: int,
                 per_source: int = MAX_HANDSHAKING_PER_SOURCE) -> None:
        self._by_host = Counter(handshaking_hosts)
        self._total = total
        self.max_total = max_total
        self.per_source = per_source

    def admit(self, host: str) -> str | None:
        """None if ``host`` may connect (and it is counted), else why not."""
        if self._total >= self.max_total:
            return TOO_MANY_CONNECTIONS
        if self._by_host[host] >= self.per_source:
            return TOO_MANY_FROM_SOURCE
        self._by_host[host] += 1
        self._total += 1
        return None


class RefusalLog:
    """A token bucket per source for log lines about connections refused or closed before their
    handshake: ``burst`` lines at once, then one per ``interval``. ``suppressed`` counts the
    lines not written (shown in gossip's status); the next line written for a source says how
    many of its own were held back."""

    def __init__(self, burst: int = LOG_BURST, interval: float = LOG_INTERVAL,
                 max_sources: int = MAX_TRACKED_SOURCES) -> None:
        self.burst = burst
        self.interval = interval
        self.max_sources = max_sources
        self.suppressed = 0
        # source -> [tokens, when they were counted, lines held back since the last one written]
        self._sources: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, source: str, now: float) -> int | None:
        """None: do not log this one (counted). Otherwise log it, with the returned number of
        lines held back for ``source`` since its last one."""
        entry = self._sources.pop(source, None)
        if entry is None:
            entry = [float(self.burst), now, 0]
        else:
            entry[0] = min(float(self.burst), entry[0] + (now - entry[1]) / self.interval)
            entry[1] = now
        self._sources[source] = entry  # most recently seen last: the oldest is evicted first
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)
        if entry[0] < 1.0:
            entry[2] += 1
            self.suppressed += 1
            return None
        entry[0] -= 1.0
        held, entry[2] = int(entry[2]), 0
        return held
