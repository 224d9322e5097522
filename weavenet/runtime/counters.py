"""Data-plane counters: frames and bytes in and out, drops by reason.

Plain integers in a dict so the forwarder can add a whole batch's numbers at once and the
periodic ``stats`` log event and ``weave status`` read one snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping


class Counters:
    __slots__ = ("values", "drops")

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.drops: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n

    def add_drops(self, drops: Mapping[str, int]) -> None:
        """Merge a batch's drop counts (e.g. ``Plan.drops``)."""
        for reason, n in drops.items():
            self.drops[reason] = self.drops.get(reason, 0) + n

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    def snapshot(self) -> dict[str, object]:
        """A msgpack/JSON-friendly copy: counters plus ``drops`` by reason and their total."""
        return {**self.values, "dropped": self.dropped, "drops": dict(self.drops)}
