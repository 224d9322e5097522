"""The gossip actor: the mesh control plane on TCP 6783.

Sockets: a listening TCP socket on ``config["port"]``; one non-blocking TCP socket per peer
connection, registered as a raw fd with the actor's poller (POLLOUT is added only while that
connection's out-buffer is non-empty, or while its connect is in progress); a SUB on the
supervisor's "actor.ready" events, so a restarted forwarder gets routes at once.

Publishes "routes" (notes/actors-contract.md) on change, every 2 s as a backstop, and when the
forwarder says it is ready. Handles the requests "connect" and "forget" ({"peers": [addr, ...]}).

Encryption (config["encryption"]): at setup the stretched password comes from the supervisor
("secret.get", answered only to gossip). Every connection gets a fresh ``KeyExchange``; the
handshake checks both sides agree on encryption and exchanges password proofs; after that the TCP
stream is sealed, and the connection's UDP keys go to the crypto actor ("crypto.install" through
the supervisor; "crypto.forget" when the connection goes). A restarted crypto actor has no keys,
so when the supervisor announces it ready every encrypted connection is closed and re-made:
fresh exchanges give fresh keys, so no nonce is ever reused.

All protocol logic is sans-IO in weavenet/ (wire, handshake, topology, routes, connmaker); this
module only moves bytes and time through it. Input from a socket can close that connection, with
the reason logged, but never the actor.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import ipaddress
import random
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq

from weavenet.crypto.keys import KeyExchange, Password
from weavenet.crypto.protocol import forget_body, install_body
from weavenet.crypto.seal import StreamSealer
from weavenet.mesh.connmaker import (
    ConnectionMaker,
    Source,
    TargetState,
    discovery_candidates,
)
from weavenet.mesh.handshake import (
    CONNECTION_TO_SELF,
    DUPLICATE_CONNECTION,
    Accepted,
    ConnectionSide,
    Handshake,
    HandshakeConfig,
    Refused,
    prefer,
)
from weavenet.mesh.peer import Peer, PeerName, new_uid
from weavenet.mesh.routes import Routes, forwarder_snapshot
from weavenet.mesh.topology import PeerRecord, Peers
from weavenet.mesh.wire import (
    MAX_MESSAGE_SIZE,
    Decoder,
    Established,
    Goodbye,
    Heartbeat,
    Message,
    Proof,
    ProtocolHeader,
    TopologyUpdate,
    WireError,
    encode_body,
    frame,
)
from weavenet.runtime import bus
from weavenet.runtime.actor import Actor, handles, main
from weavenet.runtime.address import format_host_port, normalize, parse_host_port
from weavenet.runtime.bus import Envelope
from weavenet.runtime.control import Connect, Forget
from weavenet.runtime.defaults import PORT

CONNECT_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 5.0
HEARTBEAT_INTERVAL = 2.0
SILENCE_TIMEOUT = 10.0  # five missed heartbeats: the connection (or the path) is gone
FULL_EXCHANGE_INTERVAL = 10.0
FULL_EXCHANGE_FANOUT = 3
PUBLISH_INTERVAL = 2.0
TICK = 0.1  # dial due targets, enforce connect/handshake deadlines
RECV_SIZE = 256 * 1024
MAX_READS_PER_WAKEUP = 16  # one busy peer must not starve the others
MAX_OUT_BUFFER = 2 * MAX_MESSAGE_SIZE  # a peer that stops reading is dropped, not buffered for
MAX_CONNECTIONS = 512  # handshaking and established together; more are refused at accept
SHUTDOWN_REASON = "peer shutting down"
SECRET_TIMEOUT = 5.0  # waiting for the supervisor's answer to "secret.get" at setup
RENEGOTIATE_REASON = "crypto actor restarted; renegotiating keys"
MAX_REFUSALS = 32  # inbound refusals remembered for status
REFUSAL_SHOWN_FOR = 600.0


class Phase(enum.Enum):
    CONNECTING = "connecting"  # outbound TCP connect in progress
    HANDSHAKE = "handshake"
    ESTABLISHED = "established"


@dataclass(eq=False)
class PeerConnection:
    """One TCP connection to another router, from connect to close."""

    sock: socket.socket
    fd: int
    outbound: bool
    address: str  # outbound: the dialled target; inbound: the remote's ip:port
    target: str | None  # the ConnectionMaker target to report to (outbound only)
    handshake: Handshake
    deadline: float  # for the connect, then for the handshake
    phase: Phase = Phase.HANDSHAKE
    decoder: Decoder = field(default_factory=Decoder)
    out: bytearray = field(default_factory=bytearray)
    writing: bool = False  # POLLOUT registered
    last_rx: float = 0.0
    remote: Peer | None = None
    connection_id: int = 0
    udp: str | None = None  # the remote's sleeve address: its IP and advertised UDP port
    heartbeats: int = 0
    closed: bool = False
    sealer: StreamSealer | None = None  # set once the password proofs checked
    epoch: int | None = None  # the crypto actor holds UDP keys for this connection under it


@dataclass
class Refusal:
    """An inbound connection we refused (outbound ones live in the ConnectionMaker)."""

    address: str  # the remote's IP: its source port changes on every attempt
    peer: str | None
    reason: str
    at: float
    count: int = 1


class Gossip(Actor):
    NAME = "gossip"

    def setup(self) -> None:
        self.port = int(self.config.get("port", PORT))
        self.me = Peer(PeerName(self.config["peer_name"]), str(self.config["nickname"]), new_uid())
        self.log = self.log.bind(peer=str(self.me.name))
        self.rng = random.Random()
        self.peers = Peers(self.me)
        self.routes = Routes.calculate(self.peers)
        self.maker = ConnectionMaker(rng=self.rng, default_port=self.port)
        self.password: Password | None = (
            self._fetch_password() if self.config.get("encryption") else None)
        self.hs_config = HandshakeConfig(self.me, udp_port=self.port,
                                         encrypt=self.password is not None)
        self.refusals: OrderedDict[str, Refusal] = OrderedDict()
        self.crypto_requests: dict[str, tuple[str, str, int | None]] = {}
        self.conns: dict[int, PeerConnection] = {}
        self.resolver = ThreadPoolExecutor(max_workers=2, thread_name_prefix="resolve")
        self.resolving: dict[str, Future[list[Any]]] = {}
        self.by_peer: dict[PeerName, PeerConnection] = {}  # the one established link per peer
        self.snapshot: dict[str, Any] | None = None
        self.routes_version = 0

        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("0.0.0.0", self.port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.add_reader(self.listener.fileno(), self._accept)

        self.events = self.subscribe_events("actor.ready")
        self.add_reader(self.events, self._on_event)
        self._add_targets(self.config.get("peers") or [], Source.LAUNCH)

        self.every(TICK, self._tick, first=0.0)
        self.every(HEARTBEAT_INTERVAL, self._heartbeats)
        self.every(FULL_EXCHANGE_INTERVAL, self._full_exchange)
        self.every(PUBLISH_INTERVAL, lambda: self._publish_routes(force=True))
        self._publish_routes()
        self.log.info("gossip_listening", port=self.port, uid=self.me.uid,
                      encryption=self.password is not None,
                      targets=[t.address for t in self.maker.targets()])

    def _fetch_password(self) -> Password:
        """Ask the supervisor for the stretched password, waiting on the bus socket directly:
        the loop is not running yet, and nothing else is sent to an actor before it is ready."""
        req = bus.request("secret.get", src=self.NAME, inc=self.inc)
        self.send_sup(req)
        deadline = time.monotonic() + SECRET_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            if not self.sup.poll(int(left * 1000) + 1):
                break
            try:
                env = bus.decode(self.sup.recv())
            except bus.EnvelopeError:
                continue
            if env.in_reply_to != req.id:
                self.log.warning("unexpected_bus_message_at_setup", type=env.type)
                continue
            secret = env.body.get("secret")
            if not isinstance(secret, bytes):
                raise RuntimeError("the supervisor has no network secret for gossip")
            return Password.from_derived(secret)  # never logged: as good as the password
        raise RuntimeError("the supervisor did not send the network secret in time")

    # -- requests ---------------------------------------------------------------------------
    def _addresses(self, req: Connect | Forget) -> list[str]:
        # the addresses were checked when the request was decoded; only our port is added here
        return [normalize(x, self.port) for x in req.peers]

    @handles(Connect)
    def on_connect(self, req: Connect) -> dict[str, Any]:
        added = self._add_targets(self._addresses(req), Source.CONNECT)
        return {"peers": added}

    @handles(Forget)
    def on_forget(self, req: Forget) -> dict[str, Any]:
        forgotten = set(self.maker.forget(self._addresses(req)))
        for address in forgotten:
            future = self.resolving.pop(address, None)
            if future is not None:
                future.cancel()
        for conn in list(self.conns.values()):
            if conn.target in forgotten:
                conn.target = None  # nothing left to report to
                self._close(conn, "forgotten", goodbye="forgotten by remote")
        return {"peers": sorted(forgotten)}

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
        for _ in range(64):
            try:
                sock, addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next wakeup
                self.log.warning("accept_failed", reason=str(exc))
                return
            address = format_host_port(addr[0], addr[1])
            if len(self.conns) >= MAX_CONNECTIONS:
                self.log.info("connection_refused", address=address, reason="too many connections")
                sock.close()
                continue
            conn = self._register(sock, outbound=False, address=address, target=None)
            self._start_handshake(conn)

    def _dial(self, address: str) -> None:
        host, port = parse_host_port(address)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            # A host name: resolve it off the loop (a dead DNS server must not stall the mesh),
            # then dial from _tick when the answer is in.
            self.resolving[address] = self.resolver.submit(
                socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            return
        self._open(address, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0])

    def _resolved(self, address: str, future: Future[list[Any]]) -> None:
        try:
            infos = future.result()
            # Routers listen on IPv4 only: prefer an IPv4 answer ("localhost" may list ::1 first).
            info = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
        except (OSError, IndexError) as exc:
            self._dial_failed(address, f"cannot resolve: {exc}")
            return
        self._open(address, info)

    def _open(self, address: str, info: tuple[Any, ...]) -> None:
        family, kind, proto, _, sockaddr = info
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._dial_failed(address, f"cannot open a socket: {exc}")
            return
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._dial_failed(address, f"connect: {errno.errorcode.get(err, err)}")
            return
        conn = self._register(sock, outbound=True, address=address, target=address)
        conn.phase = Phase.CONNECTING
        conn.deadline = time.monotonic() + CONNECT_TIMEOUT
        self._want_write(conn, True)
        if err == 0:
            self._start_handshake(conn)

    def _dial_failed(self, address: str, reason: str) -> None:
        self.log.info("connection_failed", address=address, reason=reason)
        self.maker.failed(address, reason)

    def _register(self, sock: socket.socket, *, outbound: bool, address: str,
                  target: str | None) -> PeerConnection:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_id = self.rng.getrandbits(64)
        decoder = Decoder()
        if self.password is None:
            hs = Handshake(self.hs_config, outbound=outbound, conn_id=conn_id)
        else:
            exchange = KeyExchange(self.password)  # fresh key pair: keys never repeat
            hs = Handshake(dataclasses.replace(self.hs_config, public_key=exchange.public_key),
                           outbound=outbound, conn_id=conn_id, exchange=exchange)
            decoder = Decoder(pause_after=(Proof,))  # the stream is sealed after the proofs
        now = time.monotonic()
        conn = PeerConnection(sock, sock.fileno(), outbound, address, target, hs,
                              deadline=now + HANDSHAKE_TIMEOUT, decoder=decoder, last_rx=now)
        self.conns[conn.fd] = conn
        self.add_reader(conn.fd, lambda: self._on_socket(conn))
        return conn

    def _start_handshake(self, conn: PeerConnection) -> None:
        conn.phase = Phase.HANDSHAKE
        conn.deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        self._send(conn, conn.handshake.start())

    def _want_write(self, conn: PeerConnection, want: bool) -> None:
        if conn.writing != want and not conn.closed:
            self.poller.register(conn.fd, zmq.POLLIN | (zmq.POLLOUT if want else 0))
            conn.writing = want

    def _on_socket(self, conn: PeerConnection) -> None:
        """Readable, writable or in error. Events can be spurious (an fd reused within one
        poll round), so every step tolerates having nothing to do."""
        if conn.closed:
            return
        try:
            if conn.phase is Phase.CONNECTING:
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._close(conn, f"connect: {errno.errorcode.get(err, err)}")
                    return
                try:
                    conn.sock.getpeername()
                except OSError:
                    return  # still connecting
                self._start_handshake(conn)
            self._flush(conn)
            if not conn.closed:
                self._read(conn)
        except WireError as exc:
            self._close(conn, f"protocol error: {exc}")
        except Exception as exc:  # a bug must cost one connection, not the router
            self.log.exception("connection_failed_internally", address=conn.address)
            self._close(conn, f"internal error: {type(exc).__name__}: {exc}")

    def _read(self, conn: PeerConnection) -> None:
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                data = conn.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close(conn, f"receive failed: {exc.strerror or exc}")
                return
            if not data:
                conn.decoder.close()  # raises TruncatedInput if it stopped mid-message
                self._close(conn, "connection closed by remote")
                return
            conn.last_rx = time.monotonic()
            items = conn.decoder.feed(data)
            while items:
                for item in items:
                    self._on_item(conn, item)
                    if conn.closed:
                        return
                # the handshake may just have switched the decoder to the sealed stream: what
                # arrived behind the proof is decoded now
                items = conn.decoder.feed(b"") if conn.decoder.buffered else []

    def _send(self, conn: PeerConnection, data: bytes) -> None:
        if conn.closed or not data:
            return
        conn.out += data
        if len(conn.out) > MAX_OUT_BUFFER:
            self._close(conn, "remote is not reading (send buffer full)")
            return
        if conn.phase is not Phase.CONNECTING:
            self._flush(conn)

    def _send_body(self, conn: PeerConnection, body: bytes) -> None:
        """One message body (``encode_body``): sealed once the connection has keys."""
        if conn.closed:
            return
        self._send(conn, conn.sealer.seal(body) if conn.sealer is not None else frame(body))

    def _flush(self, conn: PeerConnection) -> None:
        while conn.out and not conn.closed:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._close(conn, f"send failed: {exc.strerror or exc}")
                return
            del conn.out[:sent]
        self._want_write(conn, bool(conn.out))

    # -- protocol ---------------------------------------------------------------------------
    def _on_item(self, conn: PeerConnection, item: ProtocolHeader | Message) -> None:
        if conn.phase is not Phase.ESTABLISHED:
            step = conn.handshake.receive(item)
            self._send(conn, step.send)
            if isinstance(step.outcome, Accepted):
                self._on_accepted(conn, step.outcome)
            elif isinstance(step.outcome, Refused):
                self._on_refused(conn, step.outcome)
            return
        if isinstance(item, TopologyUpdate):
            self._on_gossip(conn, item.records)
        elif isinstance(item, Heartbeat | Established):
            pass  # last_rx is already updated; UDP path state is the forwarder's
        elif isinstance(item, Goodbye):
            self._close(conn, f"remote said goodbye: {item.reason}", event="connection_lost")
        else:
            self._close(conn, f"unexpected {type(item).__name__} after the handshake")

    def _on_refused(self, conn: PeerConnection, refused: Refused) -> None:
        remote = conn.handshake.remote
        self.log.info("connection_refused", address=conn.address, reason=refused.reason,
                      remote=str(remote.name) if remote else None,
                      by_remote=refused.by_remote, permanent=refused.permanent)
        if not conn.outbound and refused.permanent and refused.reason != CONNECTION_TO_SELF:
            # a configuration mismatch (password, name): the dialling side's status shows it on
            # its target; ours would otherwise forget it with the closed socket
            self._remember_refusal(conn, refused.reason)
        self._close(conn, refused.reason, permanent=refused.permanent, logged=True)

    def _on_accepted(self, conn: PeerConnection, acc: Accepted) -> None:
        remote = acc.remote
        conn.remote, conn.connection_id = remote, acc.connection_id
        if acc.keys is not None:
            # from here on, both ways, the stream is sealed (a duplicate's goodbye included)
            conn.sealer = acc.keys.stream_sealer()
            conn.decoder.open_with(acc.keys.stream_opener().open)
        try:
            conn.udp = format_host_port(conn.sock.getpeername()[0], acc.remote_udp_port)
        except OSError as exc:
            self._close(conn, f"connection lost during handshake: {exc.strerror or exc}")
            return
        if conn.target is not None:
            self.maker.connected(conn.target, remote.name)
        old = self.by_peer.get(remote.name)
        if old is not None and old.remote is not None and old.remote.uid == remote.uid:
            keep = prefer(self.me, remote, ConnectionSide(old.outbound, old.connection_id),
                          ConnectionSide(conn.outbound, conn.connection_id))
            if keep == 0:
                # Both ends run the same rule on the same two connections, so the remote drops
                # this one too; the target is settled (connected), not failed.
                conn.target = None
                self._close(conn, DUPLICATE_CONNECTION, goodbye=DUPLICATE_CONNECTION)
                return
        if old is not None:
            # The new connection replaces the old (a duplicate that loses, or a link left over
            # from the remote's previous incarnation): the peer stays connected throughout.
            reason = DUPLICATE_CONNECTION if old.remote == remote else "remote restarted"
            self._close(old, reason, goodbye=reason, replaced=True)
        if acc.keys is not None:
            conn.epoch = acc.connection_id
            self._crypto_request("crypto.install", str(remote.name), conn.epoch, install_body(
                str(remote.name), conn.epoch, acc.keys.udp_send, acc.keys.udp_recv))
        conn.phase = Phase.ESTABLISHED
        conn.last_rx = time.monotonic()
        self.by_peer[remote.name] = conn
        self._forget_refusal(conn, remote)
        self.maker.peer_connected(remote.name)
        self.peers.add_connection(remote, conn.address, outbound=conn.outbound, established=True)
        self.log.info("peer_connected", remote=str(remote.name), nickname=remote.nickname,
                      uid=remote.uid, address=conn.address, outbound=conn.outbound,
                      udp=conn.udp, encrypted=conn.sealer is not None)
        self._send_body(conn, encode_body(TopologyUpdate(self.peers.full_update())))
        self._topology_changed({self.me.name}, source=None)

    def _on_gossip(self, conn: PeerConnection, records: tuple[PeerRecord, ...]) -> None:
        improved = self.peers.merge(records)
        if improved:
            self.log.debug("topology_changed", via=conn.address,
                           improved=sorted(str(n) for n in improved))
            self._topology_changed(improved, source=conn)
        # The sender gossiped records older than ours (e.g. a restarted peer's new, low-version
        # incarnation on one side and its old record on the other): answer with what we hold.
        outdated = self.peers.outdated(records)
        if outdated and conn.remote is not None and self.by_peer.get(conn.remote.name) is conn:
            self._send_body(conn, encode_body(TopologyUpdate(self.peers.update_for(outdated))))

    def _topology_changed(self, improved: set[PeerName], source: PeerConnection | None) -> None:
        """Pass improved records on, then recompute everything that derives from the topology."""
        gone = self.peers.garbage_collect()
        if gone:
            self.log.debug("peers_forgotten", peers=sorted(str(n) for n in gone))
        records = self.peers.update_for(improved)
        if records:
            data = encode_body(TopologyUpdate(records))
            for conn in list(self.by_peer.values()):
                # The sender has these records already, unless one is ours (we outranked it).
                if conn is not source or self.me.name in improved:
                    self._send_body(conn, data)
        self.maker.update_discovered(discovery_candidates(self.peers, self.port))
        self.routes = Routes.calculate(self.peers)
        self._publish_routes()

    # -- closing ----------------------------------------------------------------------------
    def _close(self, conn: PeerConnection, reason: str, *, event: str = "connection_closed",
               goodbye: str | None = None, permanent: bool = False, replaced: bool = False,
               logged: bool = False) -> None:
        """Close one connection and account for it: the topology if it was the peer's link,
        the ConnectionMaker if it was a dial that did not make it."""
        if conn.closed:
            return
        if goodbye is not None and conn.phase is not Phase.CONNECTING:
            self._say_goodbye(conn, goodbye)
        conn.closed = True
        self.remove_reader(conn.fd)
        self.conns.pop(conn.fd, None)
        conn.sock.close()
        remote = conn.remote
        if not logged:
            self.log.info(event, address=conn.address, reason=reason,
                          remote=str(remote.name) if remote else None, phase=conn.phase.value)
        if conn.phase is Phase.ESTABLISHED and remote and self.by_peer.get(remote.name) is conn:
            del self.by_peer[remote.name]
            if replaced:
                return  # the new connection's keys replace these in the crypto actor
            if conn.epoch is not None:
                self._crypto_request("crypto.forget", str(remote.name), conn.epoch,
                                     forget_body(str(remote.name)))
            self.log.info("peer_disconnected", remote=str(remote.name),
                          nickname=remote.nickname, reason=reason)
            self.maker.peer_disconnected(remote.name, reason)
            self.peers.remove_connection(remote.name)
            self._topology_changed({self.me.name}, source=None)
        elif conn.phase is not Phase.ESTABLISHED and conn.target is not None:
            self.maker.failed(conn.target, reason, permanent=permanent)

    @staticmethod
    def _say_goodbye(conn: PeerConnection, reason: str) -> None:
        """Best effort, never waited for: the remote's log learns why, if the bytes fit."""
        body = encode_body(Goodbye(reason))
        data = conn.sealer.seal(body) if conn.sealer is not None else frame(body)
        with contextlib.suppress(OSError):
            conn.sock.send(bytes(conn.out) + data)

    # -- keys in the crypto actor -----------------------------------------------------------
    def _crypto_request(self, type_: str, peer: str, epoch: int | None,
                        body: dict[str, Any]) -> None:
        env = bus.request("request", {"to": "crypto", "type": type_, "body": body},
                          src=self.NAME, inc=self.inc)
        self.crypto_requests[env.id] = (type_, peer, epoch)
        self.send_sup(env)

    def on_reply(self, env: Envelope) -> None:
        request = self.crypto_requests.pop(env.in_reply_to or "", None)
        if request is None:
            return
        type_, peer, epoch = request
        if env.ok:
            self.log.debug("crypto_request_done", type=type_, remote=peer)
            return
        reason = (env.error or {}).get("reason", "unknown error")
        self.log.warning("crypto_request_failed", type=type_, remote=peer, reason=reason)
        conn = self.by_peer.get(PeerName(peer))
        if type_ == "crypto.install" and conn is not None and conn.epoch == epoch:
            # without keys in the crypto actor no frame can flow: make a new connection
            self._close(conn, f"session keys not installed: {reason}", goodbye=RENEGOTIATE_REASON,
                        event="connection_lost")

    def _renegotiate(self) -> None:
        """The crypto actor restarted empty: every encrypted connection gets fresh keys by being
        closed and re-made (both ends redial after a short random delay)."""
        conns = [c for c in self.by_peer.values() if c.sealer is not None]
        if conns:
            self.log.info("renegotiating_keys", connections=len(conns))
        for conn in conns:
            self._close(conn, RENEGOTIATE_REASON, goodbye=RENEGOTIATE_REASON,
                        event="connection_lost")

    # -- refusals of inbound connections, for status ----------------------------------------
    def _remember_refusal(self, conn: PeerConnection, reason: str) -> None:
        host = parse_host_port(conn.address)[0]
        remote = conn.handshake.remote
        now = time.monotonic()
        old = self.refusals.pop(host, None)
        self.refusals[host] = Refusal(host, str(remote.name) if remote else None, reason, now,
                                      (old.count + 1) if old else 1)
        while len(self.refusals) > MAX_REFUSALS:
            self.refusals.popitem(last=False)

    def _forget_refusal(self, conn: PeerConnection, remote: Peer) -> None:
        for host, refusal in list(self.refusals.items()):
            if refusal.peer == str(remote.name) or host == parse_host_port(conn.address)[0]:
                del self.refusals[host]

    # -- timers -----------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.monotonic()
        for conn in list(self.conns.values()):
            if conn.phase is not Phase.ESTABLISHED and now > conn.deadline:
                what = "connect" if conn.phase is Phase.CONNECTING else "handshake"
                self._close(conn, f"{what} timed out")
        for address, future in list(self.resolving.items()):
            if future.done():
                del self.resolving[address]
                self._resolved(address, future)
        if len(self.conns) < MAX_CONNECTIONS:
            for address in self.maker.due(now):
                self._dial(address)

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for conn in list(self.by_peer.values()):
            if now - conn.last_rx > SILENCE_TIMEOUT:
                self._close(conn, f"no data for {SILENCE_TIMEOUT:.0f}s", event="connection_lost")
            else:
                conn.heartbeats += 1
                self._send_body(conn, encode_body(Heartbeat(conn.heartbeats)))

    def _full_exchange(self) -> None:
        """The backstop for lost or GC-raced updates: everything to a few random neighbours."""
        neighbours = list(self.by_peer.values())
        if not neighbours:
            return
        data = encode_body(TopologyUpdate(self.peers.full_update()))
        for conn in self.rng.sample(neighbours, min(FULL_EXCHANGE_FANOUT, len(neighbours))):
            self._send_body(conn, data)

    # -- routes to the forwarder ------------------------------------------------------------
    def _publish_routes(self, force: bool = False) -> None:
        udp = {name: c.udp for name, c in self.by_peer.items() if c.udp}
        snap = forwarder_snapshot(self.peers, self.routes, udp)
        old = self.snapshot
        if snap != old:
            self.routes_version += 1
            self.snapshot = snap
            if old is None or (old["unicast"], old["broadcast"]) != (
                    snap["unicast"], snap["broadcast"]):
                self.log.info("routes_changed", version=self.routes_version,
                              peers=len(snap["peers"]), unicast=len(snap["unicast"]),
                              neighbours=len(self.by_peer))
        elif not force:
            return
        self.publish("routes", {"version": self.routes_version, **snap})

    def _on_event(self) -> None:
        while True:
            try:
                frames = self.events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                data = bus.decode(frames[-1]).body.get("data")
            except (bus.EnvelopeError, IndexError, AttributeError):
                continue
            if not isinstance(data, dict):
                continue
            if data.get("name") == "forwarder":
                self._publish_routes(force=True)
            elif data.get("name") == "crypto" and self.password is not None:
                self._renegotiate()

    # -- status and shutdown ----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        reach = self.peers.reachable()
        rows = []
        for conn in sorted(self.conns.values(), key=lambda c: c.address):
            established = conn.phase is Phase.ESTABLISHED
            rows.append({
                "address": conn.address,
                "peer": str(conn.remote.name) if conn.remote else None,
                "nickname": conn.remote.nickname if conn.remote else None,
                "state": "established" if established else "connecting",
                "info": ("outbound" if conn.outbound else "inbound") if established
                        else conn.phase.value,
                "encrypted": conn.sealer is not None,
            })
        now = time.monotonic()
        for r in self.refusals.values():
            if now - r.at <= REFUSAL_SHOWN_FOR:
                rows.append({"address": r.address, "peer": r.peer, "nickname": None,
                             "state": "refused", "encrypted": False,
                             "info": f"inbound refused: {r.reason} ({r.count}x, "
                                     f"{now - r.at:.0f}s ago)"})
        live = {c.target for c in self.conns.values()}
        for address in sorted(self.resolving):
            rows.append({"address": address, "peer": None, "nickname": None,
                         "state": "connecting", "info": "resolving"})
        for t in self.maker.targets():
            if t.address in live or t.state in (TargetState.CONNECTED, TargetState.CONNECTING):
                continue
            if t.peer is not None and t.peer in self.by_peer:
                continue  # reached through another connection (e.g. the remote dialled us)
            if t.state is TargetState.REFUSED:
                state, info = "failed", f"{t.last_error} (not retried)"
            elif t.state is TargetState.FAILED:
                state = "failed"
                info = f"{t.last_error}, retry in {max(0.0, t.next_try - time.monotonic()):.0f}s"
            else:
                state, info = ("retrying", t.last_error) if t.last_error else ("connecting", None)
            rows.append({"address": t.address, "peer": str(t.peer) if t.peer else None,
                         "nickname": None, "state": state, "info": info})
        return {
            "peer": {"name": str(self.me.name), "nickname": self.me.nickname, "uid": self.me.uid},
            "peers": [
                {"name": str(name), "nickname": rec.nickname, "uid": rec.uid,
                 "connections": len(rec.connections)}
                for name, rec in sorted(self.peers.records().items()) if name in reach
            ],
            "connections": rows,
            "routes": {str(d): str(h) for d, h in sorted(self.routes.unicast.items())},
        }

    def teardown(self) -> None:
        for conn in list(self.conns.values()):
            if conn.phase is Phase.ESTABLISHED:
                self._say_goodbye(conn, SHUTDOWN_REASON)
            conn.closed = True
            conn.sock.close()
        self.conns.clear()
        self.listener.close()
        self.resolver.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    sys.exit(main(Gossip))
