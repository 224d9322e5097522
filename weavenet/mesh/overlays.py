"""Every connection's overlay choice in one table: what gossip asks, sends and reports.

Sans-IO around :class:`weavenet.mesh.overlay.Overlay`, one per established connection, keyed by
the remote peer's name (gossip keeps one established connection per peer). Gossip feeds it
the time, the acknowledgements from TCP and the heartbeats from the packet socket, sends what
``heartbeats`` says, and acts on ``tick``'s switches: the set of peers on fastdp (``fastdp``:
name -> underlay address) goes to netconf (flood entries) and to the forwarder (the sleeve sends
broadcasts only to the other peers).

``disabled_reason`` is why a new connection never tries: the router's ``--no-fastdp``, a
password, a kernel without VXLAN, or a remote that did not offer fastdp in its Hello.
"""

from __future__ import annotations

from dataclasses import dataclass

from weavenet.mesh import overlay
from weavenet.mesh.overlay import Overlay, Path, Switch


@dataclass
class Link:
    peer: str
    uid: int
    host: str  # the remote's underlay address, as our TCP connection sees it
    port: int  # the remote's fastdp (VXLAN) UDP port
    overlay: Overlay


class Overlays:
    def __init__(self, *, local_disabled: str | None = None) -> None:
        self.local_disabled = local_disabled
        self.links: dict[str, Link] = {}

    def disabled_reason(self, *, remote_offers: bool, encrypted: bool) -> str | None:
        if self.local_disabled is not None:
            return self.local_disabled
        if encrypted:
            return overlay.ENCRYPTED
        if not remote_offers:
            return overlay.REMOTE_DISABLED
        return None

    def add(self, peer: str, uid: int, host: str, port: int, now: float,
            disabled: str | None) -> None:
        """A connection to ``peer`` was established (replacing any earlier one)."""
        self.links[peer] = Link(peer, uid, host, port, Overlay(now, disabled=disabled, port=port))

    def keep(self, peer: str, uid: int, host: str, disabled: str | None) -> bool:
        """A new connection replaced the one to ``peer``: True (and nothing changes) when it is
        the same incarnation at the same address with the same offer, whose path stays proven."""
        link = self.links.get(peer)
        return (link is not None and link.uid == uid and link.host == host
                and link.overlay.disabled == disabled)

    def remove(self, peer: str) -> bool:
        """The peer's connection is gone; True if it was on fastdp."""
        link = self.links.pop(peer, None)
        return link is not None and link.overlay.path is Path.FASTDP

    def path_lost(self, peer: str) -> None:
        """The peer's sleeve path went down (see ``Overlay.path_lost``)."""
        link = self.links.get(peer)
        if link is not None:
            link.overlay.path_lost()

    def heartbeats(self, now: float) -> list[tuple[Link, int]]:
        out = []
        for link in self.links.values():
            seq = link.overlay.due(now)
            if seq is not None:
                out.append((link, seq))
        return out

    def heard(self, peer: str, uid: int, seq: int, now: float) -> Link | None:
        """Heartbeat ``seq`` from ``peer`` came through our VXLAN device; the link to
        acknowledge it on, or None (no such connection, or one of an older incarnation). Only
        a full-size heartbeat proves the path; a small one is acknowledged all the same."""
        link = self.links.get(peer)
        if link is None or link.uid != uid or not link.overlay.probing:
            return None
        if not seq & overlay.SMALL:
            link.overlay.heard(now)
        return link

    def acked(self, peer: str, seq: int, now: float) -> None:
        link = self.links.get(peer)
        if link is not None:
            link.overlay.acked(seq, now)

    def tick(self, now: float) -> list[tuple[Link, Switch]]:
        out = []
        for link in self.links.values():
            switch = link.overlay.tick(now)
            if switch is not None:
                out.append((link, switch))
        return out

    def fastdp(self) -> dict[str, str]:
        """Peers on fastdp now: name -> underlay address."""
        return {p: link.host for p, link in self.links.items()
                if link.overlay.path is Path.FASTDP}

    def status(self, peer: str | None) -> dict[str, str]:
        link = self.links.get(peer) if peer is not None else None
        return link.overlay.status() if link is not None else {}
