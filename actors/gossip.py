"""The gossip actor: the mesh control plane on TCP 6783.

Sockets: a TCP listener on ``launch.port`` and one TCP stream per peer connection, all raw fds in
the actor's poller (:mod:`weavenet.runtime.tcp`: dials, host names resolved off the loop, POLLOUT
only while bytes wait); a SUB on the supervisor's "actor.ready" events, so a restarted forwarder
gets routes at once and a restarted crypto actor gets fresh keys; a SUB on the forwarder's
"paths" events: a connection carries traffic (counts as established in the topology, so routes
use it) only while its UDP path answers heartbeats, so a peer whose TCP works but whose UDP is
blocked or cut is routed around (``weavenet.mesh.router.Router.data_path``).

Publishes the event "routes" (``weavenet.mesh.routes.forwarder_snapshot`` plus a version; the
forwarder subscribes) on change, every 2 s as a backstop, and when the forwarder says it is
ready. Handles the requests "connect" and "forget" ({"peers": [addr, ...]}) and the forwarder's
"routes.get" (``weavenet.dataplane.resync``).

Restarts cost little traffic: at start it asks the forwarder for its paths ("paths.get") and
holds its routes back until the neighbours whose path works are routed to again (dialling them
at once), so the forwarder keeps the previous incarnation's routes meanwhile; a peer's TCP
connection that breaks without a goodbye while its UDP path works lingers (routes and keys
kept) for the peer to reconnect (``weavenet.mesh.connection.PeerConnection.linger``); a peer
that says it is shutting down is redialled quickly. An inbound peer is dialled back once (a bare
TCP connect, off the loop): when that fails, status calls the connection inbound-only.

Encryption (``launch.encryption``): at setup the stretched password comes from the supervisor
("secret.get", answered only to gossip). Every connection gets a fresh ``KeyExchange``; the
handshake checks both sides agree and exchanges password proofs; then the TCP stream is sealed
and the connection's UDP keys go to the crypto actor ("crypto.install" through the supervisor,
"crypto.forget" when the connection goes; ``weavenet.mesh.session_keys.SessionKeys``). A
restarted crypto actor has lost its keys, its sealers' counters and its replay windows: every
encrypted connection then moves to fresh UDP keys without being remade (a random salt sent
sealed in a ``Rekey`` message, folded into the keys on both ends,
``weavenet.crypto.keys.rekeyed_udp_keys``), so no nonce is reused and no replay accepted, and
traffic resumes as soon as the keys are installed.

Fast datapath (``weavenet.mesh.fastdp_links.FastdpLinks``, one ``Overlay`` state machine per
connection): the Hello offers it unless ``--no-fastdp`` or a password; each connection's
full-size VXLAN heartbeats go from a DF UDP socket and the peers' are read from a packet socket
on netconf's VXLAN device, each acknowledged with a ``FastdpAck`` on the TCP connection. The
whole set of fastdp peers' addresses goes to netconf (``FastdpPeers`` through the supervisor;
again every few seconds and when netconf comes up) and the set (name -> address) is added to the
"routes" event as ``fastdp``, so the forwarder stops sending broadcasts to those peers by the
sleeve.

The protocol is sans-IO in weavenet.mesh: ``router`` (topology, routes, connection maker, gossip
rules), ``connection`` (one connection's decoder, handshake, out-buffer), ``refusals``; this
module only moves bytes and time through it. Input from a socket can close that connection, with
the reason logged, but never the actor.

Strangers (inbound connections before their handshake, see ``weavenet.mesh.admission``): at most
a few per source address, messages of a few KB until accepted, and their refusals logged at a
bounded rate; status counts what was held back ("suppressed_refusals") and the gossiped records
the decoder refused ("refused_records").
"""

from __future__ import annotations

import dataclasses
import random
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from weavenet.crypto.keys import Password
from weavenet.dataplane.resync import PathsQuery, RoutesQuery
from weavenet.mesh import peerlist
from weavenet.mesh.admission import Admission, RefusalLog
from weavenet.mesh.connection import (
    DIALBACK_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    LINGER,
    OUT_BUFFER_FULL,
    PATH_DOWN_REASON,
    SILENCE_REASON,
    PeerConnection,
    Phase,
    new_handshake,
)
from weavenet.mesh.connmaker import Source
from weavenet.mesh.fastdp_links import FastdpLinks
from weavenet.mesh.handshake import (
    CONNECTION_TO_SELF,
    DUPLICATE_CONNECTION,
    Accepted,
    HandshakeConfig,
    Refused,
)
from weavenet.mesh.peer import Peer, PeerName, new_uid
from weavenet.mesh.refusals import Refusals
from weavenet.mesh.router import Router
from weavenet.mesh.session_keys import SessionKeys
from weavenet.mesh.terminations import termination_kind
from weavenet.mesh.topology import PeerRecord
from weavenet.mesh.wire import (
    FastdpAck,
    Goodbye,
    Heartbeat,
    Message,
    ProtocolHeader,
    Rekey,
    TopologyUpdate,
    WireError,
    encode_body,
)
from weavenet.runtime import tcp
from weavenet.runtime.actor import Actor, handles, main
from weavenet.runtime.address import (
    format_host_port,
    normalize,
    parse_host_port,
    parse_ipv4_endpoint,
)
from weavenet.runtime.bus import Envelope
from weavenet.runtime.control import Connect, Forget
from weavenet.runtime.events import on_events
from weavenet.runtime.ready import on_ready
from weavenet.runtime.relay import Relay
from weavenet.runtime.startup import fetch_secret

HEARTBEAT_INTERVAL = 2.0
FULL_EXCHANGE_INTERVAL = 10.0
PUBLISH_INTERVAL = 2.0
TICK = 0.1  # dial due targets, enforce connect/handshake deadlines
RECV_SIZE = 256 * 1024
MAX_READS_PER_WAKEUP = 16  # one busy peer must not starve the others
ACCEPTS_PER_WAKEUP = 64
MAX_CONNECTIONS = 512  # handshaking and established together; more are refused at accept
SHUTDOWN_REASON = "peer shutting down"
SECRET_TIMEOUT = 5.0  # waiting for the supervisor's answer to "secret.get" at setup
KEYS_NOT_INSTALLED = "session keys not installed"
# After a restart, routes are held until the neighbours whose UDP path works are routed to again
# (see weavenet.mesh.router.RouteHold), at most this long: the remote side keeps our routes as
# long (weavenet.mesh.connection.LINGER).
ROUTE_HOLD = LINGER


@dataclass(eq=False)
class SocketConnection(PeerConnection):
    """A connection's protocol state with the socket it runs on."""

    stream: tcp.Stream = field(kw_only=True)


class Gossip(Actor):
    NAME = "gossip"

    def setup(self) -> None:
        self.port = self.launch.port
        self.me = Peer(PeerName(str(self.launch.peer_name)), self.launch.nickname or "", new_uid())
        self.log = self.log.bind(peer=str(self.me.name))
        self.rng = random.Random()
        self.router: Router[SocketConnection] = Router(self.me, port=self.port, rng=self.rng,
                                                       log=self.log)
        self.maker = self.router.maker
        self.by_peer = self.router.by_peer  # the one established link per peer
        self.password: Password | None = (  # never logged: as good as the password
            Password.from_derived(fetch_secret(self, SECRET_TIMEOUT))
            if self.launch.encryption else None)
        self.hs_config = HandshakeConfig(self.me, udp_port=self.port,
                                         encrypt=self.password is not None)
        self.fastdp = FastdpLinks(self, self.me, log=self.log, enabled=self.launch.fastdp,
                                  encrypted=self.password is not None, mtu=self.launch.mtu,
                                  ack=self._fastdp_ack,
                                  changed=lambda: self._publish_routes(force=True))
        self.hs_config = dataclasses.replace(self.hs_config, fastdp=self.fastdp.offered)
        self.refusals = Refusals()
        self.refusal_log = RefusalLog()  # what strangers may write to our log
        self.refused_records = 0  # gossiped records the decoder refused (forged, out of range)
        # for status and metrics: peer-protocol messages by direction and type, and why
        # connections ended (a few fixed kinds, see weavenet.mesh.terminations)
        self.messages: dict[str, dict[str, int]] = {"rx": {}, "tx": {}}
        self.terminations: dict[str, int] = {}
        self.keys = SessionKeys(self, log=self.log, install_failed=self._keys_not_installed)
        self.conns: dict[int, SocketConnection] = {}
        self.dialer = tcp.Dialer(self._dialed, self._dial_failed)
        # whether inbound peers can be dialled back (status: inbound-only)
        self.dialbacks: tcp.Probes[SocketConnection] = tcp.Probes(DIALBACK_TIMEOUT)
        self.listener = tcp.listen(self.port)
        self.add_reader(self.listener.fileno(), self._accept)

        self.events = on_ready(self, {"forwarder": lambda: self._publish_routes(force=True),
                                      "crypto": self._rekey_all,
                                      "netconf": lambda: self.fastdp.program(force=True)})
        # A restart of this actor: the forwarder still forwards on our previous incarnation's
        # routes. Ask it which neighbours' paths work; publish no routes until they are
        # reconnected (weavenet.mesh.router.RouteHold), so a gossip restart costs no traffic.
        self.router.hold_routes(time.monotonic() + ROUTE_HOLD)
        self.forwarder: Relay[None] = Relay(self, "forwarder")
        self.forwarder.send(PathsQuery(), None)
        # Launch peers less those forgotten since, plus those connected since (weave connect
        # and forget outlive restarts of this actor and of the router).
        self.peers_file = self.state_dir / peerlist.FILE_NAME
        self.peerlist = peerlist.PeerList.load(self.peers_file)
        self._add_targets(self.peerlist.targets(self.launch.peers), Source.LAUNCH)
        self.path_states: dict[str, str] = {}  # the forwarder's view: peer -> ok, probing, ...
        self.paths_events = on_events(self, self._on_paths, "paths")

        self.every(TICK, self._tick, first=0.0)
        self.every(HEARTBEAT_INTERVAL, self._heartbeats)
        self.every(FULL_EXCHANGE_INTERVAL,
                   lambda: self._gossip(self.router.full_exchange(), publish=False))
        self.every(PUBLISH_INTERVAL, lambda: self._publish_routes(force=True))
        self._publish_routes()
        self.log.info("gossip_listening", port=self.port, uid=self.me.uid,
                      encryption=self.password is not None,
                      targets=[t.address for t in self.maker.targets()])

    # -- requests ---------------------------------------------------------------------------
    def _addresses(self, req: Connect | Forget) -> list[str]:
        # the addresses were checked when the request was decoded; only our port is added here
        return [normalize(x, self.port) for x in req.peers]

    @handles(Connect)
    def on_connect(self, req: Connect) -> dict[str, Any]:
        addresses = self._addresses(req)
        added = self._add_targets(addresses, Source.CONNECT)
        self._remember(lambda: self.peerlist.connect(addresses))
        return {"peers": added}

    @handles(Forget)
    def on_forget(self, req: Forget) -> dict[str, Any]:
        addresses = self._addresses(req)
        forgotten = set(self.maker.forget(addresses))
        self._remember(lambda: self.peerlist.forget(addresses))
        for address in forgotten:
            self.dialer.cancel(address)
        for conn in list(self.conns.values()):
            if conn.target in forgotten:
                conn.target = None  # nothing left to report to
                self._close(conn, "forgotten", goodbye="forgotten by remote", kind="forgotten")
        return {"peers": sorted(forgotten)}

    @handles(RoutesQuery)
    def on_routes_query(self, req: RoutesQuery) -> dict[str, Any]:
        return self._publish_routes(force=True) or {}

    def _remember(self, change: Callable[[], None]) -> None:
        change()
        try:
            self.peerlist.save(self.peers_file)
        except OSError as exc:  # the change holds until a restart; say so
            self.log.warning("peer_list_not_saved", path=str(self.peers_file),
                             reason=exc.strerror or str(exc))

    def _add_targets(self, addresses: Iterable[str], source: Source) -> list[str]:
        added = []
        for address in addresses:
            try:
                added += self.maker.add([address], source)
            except ValueError as exc:
                self.log.warning("bad_peer_address", address=address, reason=str(exc))
        return added

    # -- sockets: accept, dial, read, write -------------------------------------------------
    def _accept(self) -> None:
        admission = Admission([c.host for c in self.conns.values() if self._stranger(c)],
                              len(self.conns), MAX_CONNECTIONS)
        for sock, address in tcp.accept(self.listener, ACCEPTS_PER_WAKEUP, self.log):
            host = parse_host_port(address)[0]
            reason = admission.admit(host)
            if reason is not None:
                self._log_limited(host, "connection_refused", address=address, reason=reason)
                sock.close()
                continue
            self._open(sock, address, outbound=False, connected=True)

    @staticmethod
    def _stranger(conn: SocketConnection) -> bool:
        """An inbound connection whose handshake has not completed: anyone can make one."""
        return not conn.outbound and not conn.established

    def _log_limited(self, host: str, event: str, *, warning: bool = False,
                     **fields: Any) -> None:
        """A line about what a source we cannot trust did (a stranger's connection refused or
        closed, forged gossip), rate-limited per source address."""
        held = self.refusal_log.allow(host, time.monotonic())
        if held is not None:
            emit = self.log.warning if warning else self.log.info
            emit(event, **fields, **({"suppressed": held} if held else {}))

    def _dialed(self, address: str, sock: socket.socket, connected: bool) -> None:
        self._open(sock, address, outbound=True, connected=connected)

    def _dial_failed(self, address: str, reason: str) -> None:
        self.log.info("connection_failed", address=address, reason=reason)
        self._count(self.terminations, "dial_failed")
        self.maker.failed(address, reason)

    def _open(self, sock: socket.socket, address: str, *, outbound: bool,
              connected: bool) -> None:
        """A new connection: the handshake starts once TCP is up (a dial may still be
        connecting); an outbound one reports to its ConnectionMaker target."""
        stream = tcp.Stream(sock, self, lambda: self._on_socket(conn))  # conn: bound below
        # without a password the connection id keys the sleeve's control datagrams
        # (weavenet.dataplane.control_auth): it must not be predictable, so not self.rng (the
        # system's randomness, as secrets.randbits, whose import loads OpenSSL: ~3.5 MB)
        handshake, decoder = new_handshake(self.hs_config, self.password, outbound=outbound,
                                           conn_id=random.SystemRandom().getrandbits(64))
        now = time.monotonic()
        conn = SocketConnection(outbound, address, address if outbound else None, handshake,
                                deadline=now + HANDSHAKE_TIMEOUT, decoder=decoder, last_rx=now,
                                stream=stream)
        self.conns[stream.fd] = conn
        if connected:
            self._send(conn, conn.start_handshake(now))
        else:
            conn.connecting(now)
            stream.want_write(True)  # POLLOUT says the connect is done (or failed)

    def _on_socket(self, conn: SocketConnection) -> None:
        """Readable, writable or in error. Events can be spurious (an fd reused within one
        poll round), so every step tolerates having nothing to do."""
        if conn.closed:
            return
        try:
            if conn.phase is Phase.CONNECTING:
                if not conn.stream.connected():
                    return
                self._send(conn, conn.start_handshake(time.monotonic()))
            self._flush(conn)
            if not conn.closed:
                self._read(conn)
        except tcp.StreamError as exc:  # the connect or a read failed
            self._close(conn, str(exc), abrupt=True)
        except WireError as exc:
            self._close(conn, f"protocol error: {exc}")
        except Exception as exc:  # a bug must cost one connection, not the router
            self.log.exception("connection_failed_internally", address=conn.address)
            self._close(conn, f"internal error: {type(exc).__name__}: {exc}")

    def _read(self, conn: SocketConnection) -> None:
        for data in conn.stream.reads(RECV_SIZE, MAX_READS_PER_WAKEUP):
            if not data:
                conn.decoder.close()  # raises TruncatedInput if it stopped mid-message
                self._close(conn, "connection closed by remote", abrupt=True)
                return
            for item in conn.received(data, time.monotonic()):
                self._on_item(conn, item)
            if conn.closed:
                return

    def _send(self, conn: SocketConnection, data: bytes) -> None:
        if conn.closed or not data:
            return
        if not conn.queue(data):
            self._close(conn, OUT_BUFFER_FULL)
            return
        if conn.phase is not Phase.CONNECTING:
            self._flush(conn)

    def _send_body(self, conn: SocketConnection, body: bytes) -> None:
        """One message body (``encode_body``): sealed once the connection has keys."""
        if not conn.closed:
            self._send(conn, conn.framed(body))

    def _flush(self, conn: SocketConnection) -> None:
        try:
            conn.sent(conn.stream.flush(conn.out))
        except tcp.StreamError as exc:
            self._close(conn, str(exc))

    # -- protocol ---------------------------------------------------------------------------
    def _on_item(self, conn: SocketConnection, item: ProtocolHeader | Message) -> None:
        if conn.phase is not Phase.ESTABLISHED:
            step = conn.handshake.receive(item)
            self._send(conn, step.send)
            if isinstance(step.outcome, Accepted):
                self._on_accepted(conn, step.outcome)
            elif isinstance(step.outcome, Refused):
                self._on_refused(conn, step.outcome)
            return
        self._count(self.messages["rx"], type(item).__name__)
        if isinstance(item, TopologyUpdate):
            self._count_refused(conn, item.refused)
            self._on_gossip(conn, item.records)
        elif isinstance(item, Heartbeat):
            pass  # last_rx is already updated; UDP path state is the forwarder's
        elif isinstance(item, Rekey) and conn.udp_keys is not None:
            self.keys.install(conn, conn.rekey(item.salt))
        elif isinstance(item, FastdpAck):
            if conn.remote is not None and self.by_peer.get(conn.remote.name) is conn:
                self.fastdp.acked(str(conn.remote.name), item.seq)
        elif isinstance(item, Goodbye):
            self._close(conn, f"remote said goodbye: {item.reason}", event="connection_lost",
                        relaunching=item.reason == SHUTDOWN_REASON)
        else:
            self._close(conn, f"unexpected {type(item).__name__} after the handshake")

    def _on_refused(self, conn: SocketConnection, refused: Refused) -> None:
        remote = conn.handshake.remote
        fields = dict(address=conn.address, reason=refused.reason,
                      remote=str(remote.name) if remote else None,
                      by_remote=refused.by_remote, permanent=refused.permanent)
        if conn.outbound:
            self.log.info("connection_refused", **fields)
        else:
            self._log_limited(conn.host, "connection_refused", **fields)
        if not conn.outbound and refused.permanent and refused.reason != CONNECTION_TO_SELF:
            # a configuration mismatch (password, name): the dialling side's status shows it on
            # its target; ours would otherwise forget it with the closed socket
            self.refusals.remember(conn.host, str(remote.name) if remote else None,
                                   refused.reason, time.monotonic())
        self._close(conn, refused.reason, permanent=refused.permanent, logged=True,
                    kind="refused")

    def _on_accepted(self, conn: SocketConnection, acc: Accepted) -> None:
        remote = acc.remote
        conn.accept(acc)
        try:
            conn.udp = format_host_port(conn.stream.sock.getpeername()[0], acc.remote_udp_port)
        except OSError as exc:
            self._close(conn, f"connection lost during handshake: {exc.strerror or exc}")
            return
        if conn.target is not None:
            self.maker.connected(conn.target, remote.name)
        old = self.by_peer.get(remote.name)
        if old is not None and old.lingering:
            # the peer is back: its new connection takes the lingering one's place
            del self.by_peer[remote.name]
            old = None
        if conn.loses_to(old, self.me):
            conn.target = None  # the target is settled (connected), not failed
            self._close(conn, DUPLICATE_CONNECTION, goodbye=DUPLICATE_CONNECTION)
            return
        if old is not None:
            # The peer stays connected throughout: the new connection takes over the old one.
            reason = conn.replaces_reason(old)
            self._close(old, reason, goodbye=reason, replaced=True)
        conn.establish(time.monotonic(), acc.connection_id if acc.keys is not None else None)
        if conn.udp_keys is not None:
            self.keys.install(conn, conn.udp_keys)
        self.refusals.forget(conn.host, str(remote.name))
        self.log.info("peer_connected", remote=str(remote.name), nickname=remote.nickname,
                      uid=remote.uid, address=conn.address, outbound=conn.outbound,
                      udp=conn.udp, encrypted=conn.sealer is not None)
        if conn.dialback_address is not None:
            self.dialbacks.probe(conn.dialback_address, conn)
        conn.path_seen(self.path_states.get(str(remote.name)))
        self.fastdp.added(conn.stream.sock, acc)
        self._gossip(self.router.established(conn, conn.data_path))

    # -- the UDP path of each connection (the forwarder's heartbeats) --------------------------
    def _on_paths(self, _topic: str, data: dict[str, Any]) -> None:
        paths = data.get("paths")
        if not isinstance(paths, dict):
            return
        self._paths_changed(paths)

    def _paths_changed(self, paths: dict[str, Any]) -> None:
        # each event is the forwarder's whole view
        self.path_states = {str(name): str(view.get("state")) for name, view in paths.items()
                            if isinstance(view, dict)}
        sends: list[tuple[SocketConnection, bytes]] = []
        for name, conn in list(self.by_peer.items()):
            up = conn.path_seen(self.path_states.get(str(name)))
            if up is not None:
                self.log.info("data_path_up" if up else "data_path_down", remote=str(name),
                              udp=conn.udp, reason=None if up else PATH_DOWN_REASON)
                sends += self.router.data_path(conn, up)
                if not up:
                    self.fastdp.path_lost(str(name))
        if sends:
            self._gossip(sends)

    def _count_refused(self, conn: SocketConnection, refused: int) -> None:
        """Records refused by the decoder are never merged; the connection stays, as its
        remote may only be passing on what a third peer forged."""
        if refused:
            self.refused_records += refused
            self._log_limited(conn.host, "gossip_records_refused", warning=True,
                              address=conn.address, count=refused, total=self.refused_records)

    def _on_gossip(self, conn: SocketConnection, records: tuple[PeerRecord, ...]) -> None:
        improved = self.router.merge(conn, records)
        if improved:
            self._gossip(self.router.topology_changed(improved, source=conn))
        self._gossip(self.router.answer_outdated(conn, records), publish=False)

    def _gossip(self, sends: list[tuple[SocketConnection, bytes]], publish: bool = True) -> None:
        """Write what the router wants sent, then publish the routes if they changed."""
        for conn, body in sends:
            self._send_body(conn, body)
            self._count(self.messages["tx"], TopologyUpdate.__name__)
        if publish:
            self._publish_routes()

    # -- closing ----------------------------------------------------------------------------
    def _close(self, conn: SocketConnection, reason: str, *, event: str = "connection_closed",
               goodbye: str | None = None, permanent: bool = False, replaced: bool = False,
               logged: bool = False, abrupt: bool = False, relaunching: bool = False,
               kind: str | None = None) -> None:
        """Close one connection and account for it: the topology if it was the peer's link,
        the ConnectionMaker if it was a dial that did not make it. ``abrupt``: the TCP
        connection broke without a goodbye; the peer's link then lingers while its UDP path
        works (``PeerConnection.linger``). ``relaunching``: it said it is shutting down, so
        it is redialled quickly (``ConnectionMaker.peer_disconnected``)."""
        if conn.closed:
            return
        self._count(self.terminations, kind or termination_kind(reason, replaced=replaced))
        if goodbye is not None and conn.phase is not Phase.CONNECTING:
            conn.stream.send_once(conn.goodbye(goodbye))  # the remote's log learns why
            self._count(self.messages["tx"], Goodbye.__name__)
        conn.close()
        self.conns.pop(conn.stream.fd, None)
        conn.stream.close()
        remote = conn.remote
        if not logged:
            fields = dict(address=conn.address, reason=reason,
                          remote=str(remote.name) if remote else None, phase=conn.phase.value)
            if self._stranger(conn):
                self._log_limited(conn.host, event, **fields)
            else:
                self.log.info(event, **fields)
        if conn.established and remote and self.by_peer.get(remote.name) is conn:
            if replaced:
                del self.by_peer[remote.name]
                return  # the new connection's keys replace these in the crypto actor
            if abrupt and conn.linger(time.monotonic()):
                self.log.info("peer_lingering", remote=str(remote.name), reason=reason,
                              seconds=LINGER)
                # redial it as if it were gone: it may not be able to dial us (NAT)
                self.maker.peer_disconnected(remote.name, reason)
                return
            self._lose(conn, reason, relaunching)
        elif not conn.established and conn.target is not None:
            self.maker.failed(conn.target, reason, permanent=permanent)

    def _lose(self, conn: SocketConnection, reason: str, relaunching: bool = False) -> None:
        """The peer's established link is gone for good: its keys, its place in the topology."""
        remote = conn.remote
        assert remote is not None
        if conn.epoch is not None:
            self.keys.forget(str(remote.name), conn.epoch)
        self.log.info("peer_disconnected", remote=str(remote.name),
                      nickname=remote.nickname, reason=reason)
        self.fastdp.removed(str(remote.name))
        self._gossip(self.router.lost(conn, reason, relaunching))

    # -- replies: the forwarder's paths, netconf, the crypto actor ----------------------------
    def on_reply(self, env: Envelope) -> None:
        if self.forwarder.answer(env) is not None:
            self._on_paths_reply(env)
            return
        if self.fastdp.answer(env):
            return
        self.keys.answer(env)

    def _on_paths_reply(self, env: Envelope) -> None:
        """The forwarder's paths at our start: reconnect to the neighbours whose path works
        before routes are published, and dial them now rather than wait for them to redial."""
        paths = env.body.get("paths") if env.ok else None
        if not isinstance(paths, dict):
            self.router.reconnect_to(())  # no forwarder (yet): nothing to wait for
            return
        live = {name: view for name, view in paths.items()
                if isinstance(view, dict) and view.get("state") == "ok"}
        try:
            self.router.reconnect_to(PeerName(name) for name in live)
        except ValueError:
            self.router.reconnect_to(())
        addresses = []
        for view in live.values():
            # the address the peer's heartbeats come from; its TCP port is its UDP port (both
            # are the one `--port` it was launched with) unless NAT mapped it, then the dial
            # fails once and the peer's own redial reconnects
            endpoint = parse_ipv4_endpoint(view.get("addr"))
            if endpoint is not None:
                addresses.append(format_host_port(*endpoint))
        if addresses:
            self.log.info("reconnecting", peers=sorted(live), addresses=addresses)
            self._add_targets(addresses, Source.DISCOVERED)
        self._paths_changed(paths)
        self._publish_routes()

    # -- keys in the crypto actor (weavenet.mesh.session_keys) ------------------------------
    def _keys_not_installed(self, peer: str, epoch: int | None, reason: str) -> None:
        conn = self.by_peer.get(PeerName(peer))
        if conn is not None and conn.epoch == epoch:
            # without keys in the crypto actor no frame can flow: make a new connection
            self._close(conn, f"{KEYS_NOT_INSTALLED}: {reason}", goodbye=KEYS_NOT_INSTALLED,
                        event="connection_lost", kind="rekeyed")

    def _rekey_all(self) -> None:
        """The crypto actor restarted empty: every encrypted connection moves to fresh UDP keys,
        here and (told by a ``Rekey``) at the remote. Without encryption there is none."""
        conns = [c for c in self.by_peer.values() if c.udp_keys is not None and not c.closed]
        if conns:
            self.log.info("rekeying", connections=len(conns))
        for conn in conns:
            self._send_body(conn, self.keys.rekey(conn))
            self._count(self.messages["tx"], Rekey.__name__)

    # -- timers -----------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        for conn in list(self.conns.values()):
            expired = conn.expired(now)
            if expired is not None:
                self._close(conn, expired)
        for conn in [c for c in self.by_peer.values() if c.lingering]:
            over = conn.linger_over(now)
            if over is not None:
                self._lose(conn, over)
        if self.router.hold is not None:
            self._publish_routes()  # released when its time is up
        self.dialer.poll()
        for conn, reachable in self.dialbacks.done():
            conn.dialback = reachable
            if not reachable and not conn.closed:
                self.log.info("peer_inbound_only", address=conn.dialback_address,
                              remote=str(conn.remote.name) if conn.remote else None,
                              reason="cannot dial it back (behind NAT or a firewall?)")
        if len(self.conns) < MAX_CONNECTIONS:
            for address in self.maker.due(now):
                self.dialer.dial(address)

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for conn in list(self.by_peer.values()):
            if conn.silent(now):
                self._close(conn, SILENCE_REASON, event="connection_lost")
            else:
                self._send_body(conn, conn.heartbeat())
                self._count(self.messages["tx"], Heartbeat.__name__)

    def _publish_routes(self, force: bool = False) -> dict[str, Any] | None:
        event = self.router.routes_event(time.monotonic(), force)
        if event is not None:
            fastdp = self.fastdp.peers()
            if fastdp is not None:  # absent: the forwarder keeps the set it has
                event = {**event, "fastdp": fastdp}
            self.publish("routes", event)
        return event

    # -- the fast datapath (weavenet.mesh.fastdp_links) --------------------------------------
    def _fastdp_ack(self, peer: str, seq: int) -> None:
        """A fastdp heartbeat of ``peer`` crossed the kernel path: say so on its connection."""
        conn = self.by_peer.get(PeerName(peer))
        if conn is not None:
            self._send_body(conn, encode_body(FastdpAck(seq)))
            self._count(self.messages["tx"], FastdpAck.__name__)

    # -- status and shutdown ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Live connections, recent inbound refusals, names being resolved, then the targets no
        connection stands for."""
        now = time.monotonic()
        rows = [self._overlay_row(c) for c in sorted(self.conns.values(), key=lambda c: c.address)]
        rows += [self._overlay_row(c) for c in self.by_peer.values() if c.lingering]
        rows += [r.status_row(now) for r in self.refusals.recent(now)]
        rows += [{"address": address, "peer": None, "nickname": None, "state": "connecting",
                  "info": "resolving"} for address in self.dialer.resolving]
        rows += self.router.target_rows({c.target for c in self.conns.values()}, now)
        return {**self.router.status(rows), "refused_records": self.refused_records,
                "suppressed_refusals": self.refusal_log.suppressed,
                "messages": self.messages, "terminations": self.terminations}

    def _overlay_row(self, conn: SocketConnection) -> dict[str, Any]:
        """A connection's status row with its overlay: "fastdp", or "sleeve" and why."""
        row = conn.status_row()
        remote = conn.remote
        if conn.established and remote is not None and self.by_peer.get(remote.name) is conn:
            row.update(self.fastdp.status_fields(str(remote.name)))
        return row

    @staticmethod
    def _count(table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def teardown(self) -> None:
        for conn in list(self.conns.values()):
            if conn.established:
                conn.stream.send_once(conn.goodbye(SHUTDOWN_REASON))
            conn.close()
            conn.stream.close()
        self.conns.clear()
        self.listener.close()
        self.dialer.close()
        self.dialbacks.close()


if __name__ == "__main__":
    sys.exit(main(Gossip))
