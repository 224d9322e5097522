"""The peers added and forgotten at run time, kept across restarts of gossip and the router.

`weave launch ... host1` names peers once; `weave connect host4` and `weave forget host1` change
that set while the router runs. Both must outlive a restarted gossip actor (which reads its
launch arguments again) and a `weave stop` + `weave launch`, so they are recorded in
``WEAVE_STATE_DIR/peers.json``. What gossip dials at start is the launch peers less the
forgotten ones, plus the connected ones. A fresh `weave launch` that names a forgotten peer
again wants it back: ``launched`` takes it off the forgotten list. `weave reset` removes the
file with the rest of the state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from weavenet.runtime.statefile import write_atomic

FILE_NAME = "peers.json"
MAX_ENTRIES = 1024  # as many as one request may name; older entries fall off first


@dataclass
class PeerList:
    connected: list[str] = field(default_factory=list)  # normalised host:port, oldest first
    forgotten: list[str] = field(default_factory=list)

    def connect(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            _remove(self.forgotten, address)
            _append(self.connected, address)

    def forget(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            _remove(self.connected, address)
            _append(self.forgotten, address)

    def launched(self, peers: Iterable[str]) -> None:
        """A fresh `weave launch` names ``peers``: none of them stays forgotten."""
        for address in peers:
            _remove(self.forgotten, address)

    def targets(self, launch_peers: Iterable[str]) -> list[str]:
        """What to dial at start: the launch peers not forgotten since, then the connected."""
        out = [p for p in launch_peers if p not in self.forgotten]
        return out + [p for p in self.connected if p not in out]

    # -- the file ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> PeerList:
        """The recorded list; an absent or unreadable file is an empty one (never fatal)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        return cls(_strings(data.get("connected")), _strings(data.get("forgotten")))

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps({"connected": self.connected, "forgotten": self.forgotten}))


def record_launch(state_dir: str | Path, peers: Iterable[str]) -> None:
    """A fresh `weave launch` names ``peers``: recorded once per launch (by the supervisor in
    process mode, by the CLI before it creates the router container, whose restarts by Docker
    replay the same arguments and must not undo a `weave forget` made since)."""
    path = Path(state_dir) / FILE_NAME
    known = PeerList.load(path)
    known.launched(peers)
    known.save(path)


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)][-MAX_ENTRIES:]


def _remove(entries: list[str], address: str) -> None:
    if address in entries:
        entries.remove(address)


def _append(entries: list[str], address: str) -> None:
    if address not in entries:
        entries.append(address)
        del entries[:-MAX_ENTRIES]
