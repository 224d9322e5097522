"""The record of attached containers that netconf keeps in WEAVE_STATE_DIR/attachments.json.

`weave ps` and the address-in-use check read it; an entry whose namespace is gone (the
container exited, or its pid now names another process) is pruned. The file is JSON, one object
keyed by the attachment key, each value an :class:`Attachment`'s fields; it is written whole
(temporary file, then rename) so a crash never leaves half a record. Everything but
:meth:`Attachments.load` and :meth:`Attachments.save` is plain data: the namespace check is an
injected function, so the logic is tested without namespaces.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

from weavenet.runtime.statefile import write_atomic

FILE_NAME = "attachments.json"


def ns_inode(path: str) -> int | None:
    """The inode of a namespace file, None if it is gone."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


@dataclass(frozen=True)
class Attachment:
    """One container on the weave network, as netconf attached it."""

    key: str
    label: str
    container_id: str | None
    pid: int | None
    netns: str
    ino: int | None  # the namespace's inode when attached: a reused pid has another one
    mac: str | None
    host_ifname: str | None
    cidrs: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cidrs"] = list(self.cidrs)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        """Raises KeyError/TypeError/ValueError on an entry this version did not write."""
        cidrs = d["cidrs"]
        if not isinstance(d["key"], str) or not isinstance(d["netns"], str) \
                or not isinstance(cidrs, list):
            raise ValueError("malformed attachment")
        return cls(key=d["key"], label=str(d.get("label") or d["key"]),
                   container_id=d.get("container_id"), pid=d.get("pid"), netns=d["netns"],
                   ino=d.get("ino"), mac=d.get("mac"), host_ifname=d.get("host_ifname"),
                   cidrs=tuple(str(c) for c in cidrs))

    def summary(self) -> dict[str, Any]:
        """What `weave ps` shows."""
        return {"key": self.key, "label": self.label, "container_id": self.container_id,
                "mac": self.mac, "cidrs": list(self.cidrs)}

    def has_ip(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ipaddress.ip_interface(c).ip == ip for c in self.cidrs)


class Attachments:
    """The attached containers by key; ``inode`` tells whether a namespace is still the same."""

    def __init__(self, path: Path, entries: Mapping[str, Attachment] | None = None,
                 inode: Callable[[str], int | None] = ns_inode) -> None:
        self.path = Path(path)
        self.inode = inode
        self._entries: dict[str, Attachment] = dict(entries or {})

    @classmethod
    def load(cls, path: Path, inode: Callable[[str], int | None] = ns_inode) -> Attachments:
        """The record on disk; a missing or unreadable file, or an entry that is not one, is
        skipped: the record is a cache of kernel state, never a reason not to start."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            data = {}
        entries: dict[str, Attachment] = {}
        if isinstance(data, dict):
            for k, v in data.items():
                try:
                    entries[k] = Attachment.from_json(v)
                except (KeyError, TypeError, ValueError):
                    continue
        return cls(path, entries, inode)

    def save(self) -> None:
        write_atomic(self.path,
                     json.dumps({k: a.to_json() for k, a in self._entries.items()}, indent=1))

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Attachment]:
        return iter(list(self._entries.values()))

    def get(self, key: str) -> Attachment | None:
        return self._entries.get(key)

    def put(self, attachment: Attachment) -> None:
        self._entries[attachment.key] = attachment

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)

    def alive(self, a: Attachment) -> bool:
        """A pid can be reused; the namespace inode tells whether it is still the container."""
        ino = self.inode(a.netns)
        return ino is not None and (a.ino is None or ino == a.ino)

    def prune(self, keep: Callable[[Attachment], bool] = lambda a: False) -> list[str]:
        """Drop the entries whose namespace is gone, but those ``keep`` holds on to (a stopped
        Docker container's, while Docker's events say when it starts again or is removed);
        their keys (the caller saves if any)."""
        gone = [k for k, a in self._entries.items() if not self.alive(a) and not keep(a)]
        for k in gone:
            del self._entries[k]
        return gone

    def user_of(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                except_key: str | None = None) -> Attachment | None:
        """The attachment (other than ``except_key``'s) that has the address, if any."""
        for k, a in self._entries.items():
            if k != except_key and a.has_ip(ip):
                return a
        return None

    def summaries(self) -> list[dict[str, Any]]:
        """What `weave ps` shows: the attachments whose namespace is there (a stopped
        container's kept record is not)."""
        return [a.summary() for a in self._entries.values() if self.alive(a)]
