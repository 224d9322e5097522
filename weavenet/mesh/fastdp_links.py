"""Gossip's fast datapath: the overlays table driven by time, two sockets and netconf.

The decisions are sans-IO in :mod:`weavenet.mesh.overlays` (one ``Overlay`` state machine per
established connection); this class is the thin part that runs them inside the gossip actor.
It sends each link's full-size VXLAN heartbeats (:mod:`weavenet.mesh.fdpwire`) from a DF UDP
socket, reads the peers' from a packet socket on netconf's VXLAN device (opened once the device
exists; ``fastdp_unavailable`` when it never does), and hands each heartbeat it hears from a
linked peer to ``ack`` (gossip answers with a ``FastdpAck`` on the TCP connection). On a switch
it logs ``overlay_switch`` (remote, path, why), sends netconf the whole set of fastdp peers'
addresses (``FastdpPeers`` through the supervisor; again every ``FASTDP_RESEND`` and when netconf
comes up) and calls ``changed`` (gossip republishes its routes, whose ``fastdp`` field is
``peers()``, absent until this incarnation first programmed netconf). For ``FASTDP_GRACE``
after start the set only grows: a restarted gossip does not take away kernel entries that
carry traffic before it has re-proved them. An address this
incarnation itself saw fail (a switch to the sleeve, a lost connection) is taken away at once,
grace or not: a link cut just after launch is routed around as fast as any other
(:func:`kernel_peers`).

The actor is used only for its timers, its poller and the supervisor (a ``Relay``).
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weavenet.host import fdpsock
from weavenet.mesh import fdpwire, overlay
from weavenet.mesh.handshake import Accepted
from weavenet.mesh.overlays import Overlays
from weavenet.mesh.peer import Peer
from weavenet.runtime.bus import Envelope
from weavenet.runtime.fastdp import VNI, VXLAN_NAME, FastdpPeers
from weavenet.runtime.relay import Relay

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor

FASTDP_TICK = 0.1
FASTDP_RESEND = 3.0  # the whole fastdp set to netconf again (a restarted netconf converges)
FASTDP_GRACE = 10.0  # after start, entries are only added (see the module docstring)
NO_VXLAN_AFTER = 10.0  # the VXLAN device still missing: this kernel or netconf cannot make it


def kernel_peers(proven: set[str], programmed: tuple[str, ...] | None, failed: set[str],
                 in_grace: bool) -> tuple[str, ...]:
    """The addresses netconf should give flood entries: the ``proven`` ones; during the grace
    after start also those a previous incarnation ``programmed``, except those that ``failed``
    since (their heartbeats stopped here: keeping them would send frames into a dead path)."""
    if in_grace:
        proven = proven | (set(programmed or ()) - failed)
    return tuple(sorted(proven))


class FastdpLinks:
    """The fast datapath of every connection of the gossip actor ``actor``."""

    def __init__(self, actor: Actor, me: Peer, *, log: Any, enabled: bool, encrypted: bool,
                 mtu: int, ack: Callable[[str, int], None],
                 changed: Callable[[], None]) -> None:
        """``ack(peer, seq)``: a heartbeat of a linked peer was heard; ``changed()``: the set
        of fastdp peers changed (netconf has been told)."""
        self.actor, self.me, self.log, self.mtu = actor, me, log, mtu
        self.ack, self.changed = ack, changed
        local = (overlay.LOCAL_DISABLED if not enabled
                 else overlay.ENCRYPTED if encrypted else None)
        self.offered = local is None  # the Hello offers fastdp
        self.overlays = Overlays(local_disabled=local)
        self.netconf = Relay[tuple[str, ...]](actor, "netconf")
        self.started = time.monotonic()
        self.programmed: tuple[str, ...] | None = None
        self.failed: set[str] = set()  # addresses this incarnation saw leave fastdp
        self.rx: socket.socket | None = None
        self.tx = fdpsock.open_sender() if local is None else None
        if local is None:
            actor.every(FASTDP_TICK, self._tick)
            actor.every(FASTDP_RESEND, lambda: self.program(force=True))

    # -- what gossip tells it -----------------------------------------------------------------
    def added(self, sock: socket.socket, acc: Accepted) -> None:
        """A connection was established on ``sock`` with the handshake's outcome ``acc``."""
        remote = acc.remote
        try:
            host = sock.getpeername()[0]
        except OSError:
            return
        disabled = self.overlays.disabled_reason(remote_offers=acc.remote_fastdp,
                                                 encrypted=acc.keys is not None)
        if disabled is None and ":" in host:
            disabled = "IPv6 underlay (fastdp is IPv4 only)"
        if self.overlays.keep(str(remote.name), remote.uid, host, disabled):
            return  # a replacing connection to the same incarnation: the path is unchanged
        if self.overlays.remove(str(remote.name)):  # a new incarnation: prove it again
            self._changed()
        self.overlays.add(str(remote.name), remote.uid, host, acc.remote_udp_port + 1,
                          time.monotonic(), disabled)

    def removed(self, peer: str) -> None:
        host = self.overlays.fastdp().get(peer)
        if host is not None:
            self.failed.add(host)
        if self.overlays.remove(peer):
            self.log.info("overlay_switch", remote=peer, path="sleeve", why="connection closed")
            self._changed()

    def path_lost(self, peer: str) -> None:
        """The peer's sleeve path went down: its fastdp link falls back at the next tick."""
        self.overlays.path_lost(peer)

    def acked(self, peer: str, seq: int) -> None:
        """The peer's ``FastdpAck`` came on its established connection."""
        self.overlays.acked(peer, seq, time.monotonic())

    def answer(self, env: Envelope) -> bool:
        """Whether ``env`` is netconf's reply to ``FastdpPeers`` (and then act on it)."""
        programmed = self.netconf.answer(env)
        if programmed is None:
            return False
        ips, why = programmed
        if why is not None:
            self.log.warning("fastdp_program_failed", peers=list(ips), reason=why)
            self.programmed = None  # the backstop sends it again
        return True

    # -- what gossip asks it ------------------------------------------------------------------
    def peers(self) -> dict[str, str] | None:
        """The peers on fastdp: name -> underlay address (the "routes" event's ``fastdp``); None
        until this incarnation first told netconf its set: the kernel still carries what the
        previous gossip left, which the forwarder still knows and keeps (a restarted gossip
        saying "none" would make the sleeve send broadcasts that the kernel sends too)."""
        if self.offered and self.programmed is None:
            return None
        return self.overlays.fastdp()

    def status_fields(self, peer: str) -> dict[str, Any]:
        """A connection's overlay for its status row: "fastdp", or "sleeve" and why."""
        ov = self.overlays.status(peer)
        return {"overlay": ov["path"], "overlay_reason": ov["reason"]} if ov else {}

    # -- sockets and netconf ------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        if self.rx is None:
            self._listen(now)
        assert self.tx is not None
        me, mtu = self.me, self.mtu
        for link, seq in self.overlays.heartbeats(now):
            # the full-size one proves the path; the small one tells a too small path MTU
            # from a blocked port (weavenet.mesh.overlay)
            for n, size in ((seq, mtu), (seq | overlay.SMALL, None)):
                data = fdpwire.encode_datagram(fdpwire.FdpHeartbeat(str(me.name), me.uid, n),
                                               VNI, size)
                try:
                    self.tx.sendto(data, (link.host, link.port))
                except OSError as exc:
                    if n == seq:
                        link.overlay.send_failed(now, too_big=exc.errno == errno.EMSGSIZE)
        switches = self.overlays.tick(now)
        for link, switch in switches:
            self.log.info("overlay_switch", remote=link.peer, address=link.host,
                          path=switch.path.value, why=switch.why)
            if switch.path is overlay.Path.FASTDP:
                self.failed.discard(link.host)
            else:
                self.failed.add(link.host)
        if switches:
            self._changed()

    def _listen(self, now: float) -> None:
        try:
            self.rx = fdpsock.open_listener(VXLAN_NAME)
        except OSError as exc:
            if (now - self.started > NO_VXLAN_AFTER
                    and self.overlays.local_disabled is None):
                self.overlays.local_disabled = overlay.NO_VXLAN
                self.log.warning("fastdp_unavailable", device=VXLAN_NAME, reason=str(exc))
            return
        self.overlays.local_disabled = None
        self.actor.add_reader(self.rx.fileno(), self._heard)

    def _heard(self) -> None:
        assert self.rx is not None
        now = time.monotonic()
        for _ in range(64):
            try:
                frame = self.rx.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:  # the device went away (weave reset under us)
                self.log.warning("fastdp_listener_lost", reason=str(exc))
                self.actor.remove_reader(self.rx.fileno())
                self.rx.close()
                self.rx = None
                return
            try:
                hb = fdpwire.decode_frame(frame)
            except fdpwire.FdpWireError:
                continue
            if self.overlays.heard(hb.peer, hb.uid, hb.seq, now) is not None:
                self.ack(hb.peer, hb.seq)

    def _changed(self) -> None:
        self.program()
        self.changed()

    def program(self, force: bool = False) -> None:
        """Tell netconf which addresses get flood entries (the whole set: idempotent)."""
        if self.tx is None:
            return
        proven = set(self.overlays.fastdp().values())
        in_grace = time.monotonic() - self.started < FASTDP_GRACE
        if in_grace and self.programmed is None and not proven and not self.failed:
            return  # nothing proven yet: leave the kernel as a previous gossip left it
        ips = kernel_peers(proven, self.programmed, self.failed, in_grace)
        if ips == self.programmed and not force:
            return
        self.programmed = ips
        self.netconf.send(FastdpPeers(ips), ips)
