"""Inbound connections we refused, remembered for ``weave status``.

A dialling peer whose connection we refuse for a configuration mismatch (password, encryption,
name) shows the failure on its own target; the refusing side has nothing left to show once the
socket is closed. This memory fills that gap: one entry per remote IP (its source port changes on
every attempt), counted, shown for a while, forgotten when that peer connects after all.
Refusals of outbound connections live in the ConnectionMaker's targets instead.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_REFUSALS = 32  # the oldest entry goes first
REFUSAL_SHOWN_FOR = 600.0


@dataclass(frozen=True)
class Refusal:
    address: str  # the remote's IP
    peer: str | None  # who it said it was, if its hello arrived
    reason: str
    at: float  # the latest refusal
    count: int = 1

    def status_row(self, now: float) -> dict[str, Any]:
        return {"address": self.address, "peer": self.peer, "nickname": None,
                "state": "refused", "encrypted": False, "direction": "inbound",
                "reason": self.reason,
                "info": f"inbound refused: {self.reason} ({self.count}x, "
                        f"{now - self.at:.0f}s ago)"}


class Refusals:
    def __init__(self, limit: int = MAX_REFUSALS, shown_for: float = REFUSAL_SHOWN_FOR) -> None:
        self.limit = limit
        self.shown_for = shown_for
        self._by_host: OrderedDict[str, Refusal] = OrderedDict()

    def remember(self, host: str, peer: str | None, reason: str, now: float) -> Refusal:
        old = self._by_host.pop(host, None)
        refusal = self._by_host[host] = Refusal(host, peer, reason, now,
                                                (old.count + 1) if old else 1)
        while len(self._by_host) > self.limit:
            self._by_host.popitem(last=False)
        return refusal

    def forget(self, host: str, peer: str) -> None:
        """``peer`` connected from ``host``: what was refused from either is settled."""
        for key, refusal in list(self._by_host.items()):
            if refusal.peer == peer or key == host:
                del self._by_host[key]

    def recent(self, now: float) -> list[Refusal]:
        """The refusals still worth showing, oldest first."""
        return [r for r in self._by_host.values() if now - r.at <= self.shown_for]
