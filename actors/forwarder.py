"""The forwarder actor: the sleeve's UDP side and the per-frame forwarding loop.

A thin loop around the sans-IO core: frames captured on our bridge (PULL from capture) go
through :class:`weavenet.dataplane.forwarding.Forwarder` and leave as sleeve datagrams
(:func:`weavenet.dataplane.sleeve.pack_datagram`) to each next hop's UDP address; datagrams from the
network are decoded and either injected (PUSH to capture) or relayed. Routes come from the
gossip actor's "routes" event. Per neighbour it keeps a :class:`Path`: the UDP address
(configured by gossip or learned from the neighbour's own heartbeats, which is what makes a
peer behind NAT reachable), heartbeat liveness and a :class:`weavenet.dataplane.pmtu.PathMtu`.

The core runs on wire peer ids (48-bit ints, see :func:`weavenet.dataplane.sleeve.peer_to_wire`) so
nothing is converted per datagram; names only appear in routes, status and events.

With encryption (config["encryption"]) every FRAMES datagram goes through the crypto actor (a
DEALER on ``Endpoints.crypto``, batches per neighbour, never blocking: a full queue drops and
counts). A sealed datagram is the first 12 bytes of the sleeve outer header (version, kind,
flags with ENCRYPTED, reserved, sender) followed by the crypto actor's ``seq || MAC || ciphertext``
of the FRAMES body: the sealed blob's sequence number sits exactly where the clear header has
its ``seq``, so ``parse_header`` reads sealed and clear datagrams alike. The body is 16 bytes
longer sealed (the MAC), which is taken off each path's datagram budget. Clear FRAMES datagrams
are dropped when encrypting (no downgrade), sealed ones when not. Heartbeats and PMTU probes
stay in clear: they carry tokens and sizes, never container data.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from weavenet.crypto.protocol import (
    OPEN,
    OVERHEAD,
    SEAL,
    CryptoProtoError,
    decode_reply,
    encode_request,
)
from weavenet.dataplane.batch import MAX_BATCH, BatchError, decode_batch, encode_batch, tune_malloc
from weavenet.dataplane.forwarding import Forwarder, Plan, RouteTable
from weavenet.dataplane.maccache import MacCache
from weavenet.dataplane.pmtu import PathMtu, fit_frame, frame_budget
from weavenet.dataplane.sleeve import (
    BROADCAST_PEER,
    ENCRYPTED,
    FRAG_TEST,
    FRAG_TEST_ACK,
    FRAGMENT,
    FRAMES,
    HEARTBEAT,
    HEARTBEAT_ACK,
    MAX_DATAGRAM,
    OUTER_LEN,
    PMTU_ACK,
    PMTU_PROBE,
    VERSION,
    Header,
    Piece,
    Reassembler,
    SleeveError,
    build_control,
    pack_datagram,
    parse_header,
    parse_piece,
    peer_from_wire,
    peer_to_wire,
    split_coalesced,
    split_datagram,
    unpack_control_body,
    unpack_frames,
)
from weavenet.runtime import bus
from weavenet.runtime.actor import Actor, drain, main
from weavenet.runtime.address import parse_ipv4_endpoint
from weavenet.runtime.counters import Counters
from weavenet.runtime.defaults import PORT

# Linux <linux/in.h>; the socket module does not export them all.
IP_MTU_DISCOVER = 10
IP_MTU = 14
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_PROBE = 3
# <linux/udp.h>: UDP GSO (send one buffer, the kernel cuts it into datagrams) and GRO (receive
# several same-sized datagrams of one flow in one read, with their size in a cmsg)
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)
UDP_IP_OVERHEAD = 28  # IPv4 + UDP headers

SOCKET_BUFFER = 4 * 1024 * 1024
QUEUE_HWM = 1024
DATAGRAMS_PER_WAKEUP = 256  # bound the work per poll so capture's queue and timers get a turn
BATCHES_PER_WAKEUP = 16
HEARTBEAT_INTERVAL = 1.0
PATH_OK_FOR = 3.5  # a path is ok while we heard from the neighbour this recently
PROBING_FOR = 5.0  # a never-heard path is "probing" this long, then "unreachable"
PMTU_POLL = 0.1
STATS_INTERVAL = 30.0
EXPIRE_INTERVAL = 60.0
CRYPTO_REPLIES_PER_WAKEUP = 64

SEALED_PREFIX_LEN = 12  # version, kind, flags, reserved, sender: the outer header before seq
SEAL_EXTRA = SEALED_PREFIX_LEN + OVERHEAD - OUTER_LEN  # bytes a datagram grows when sealed
_OPENED = Header(FRAMES, 0, 0, 0)  # what unpack_frames needs of the header: only the kind

# drop reasons of the actor (the core's are in weavenet.dataplane's forwarding and pmtu)
MALFORMED = "malformed_datagram"
UNKNOWN_SENDER = "unknown_sender"
SEALED = "sealed_unexpected"  # an encrypted datagram while we run without a password
PLAINTEXT = "plaintext_refused"  # a clear FRAMES datagram while we encrypt: never downgrade
CRYPTO_QUEUE_FULL = "crypto_queue_full"
CRYPTO_FAILED = "crypto_failed"  # no keys yet, forged, replayed (the crypto actor counts why)
BAD_CRYPTO_REPLY = "bad_crypto_reply"
REASSEMBLY_FAILED = "reassembly_failed"  # datagrams whose pieces did not all arrive in time
NO_ADDRESS = "no_address"  # next hop whose UDP address we do not know
SEND_FAILED = "send_failed"
INJECT_QUEUE_FULL = "inject_queue_full"
BAD_BATCH = "bad_batch"


class Path:
    """One neighbour's UDP path: address, liveness and path MTU. Sans-IO (``now`` injected)."""

    __slots__ = ("name", "wire", "addr", "configured", "learned", "pmtu", "last_heard",
                 "since", "seq", "was_ok")

    def __init__(self, name: str, wire: int, configured: tuple[str, int] | None,
                 now: float) -> None:
        self.name = name
        self.wire = wire
        self.configured = configured
        self.learned: tuple[str, int] | None = None
        self.addr = configured
        self.pmtu: PathMtu | None = None
        self.last_heard: float | None = None
        self.since = now
        self.seq = 0
        self.was_ok = False

    def state(self, now: float) -> str:
        if self.last_heard is not None and now - self.last_heard <= PATH_OK_FOR:
            return "ok"
        if self.last_heard is None and now - self.since < PROBING_FOR:
            return "probing"
        return "unreachable"

    def set_configured(self, addr: tuple[str, int] | None) -> None:
        self.configured = addr
        if self.learned is None:
            self.addr = addr

    def heard(self, addr: tuple[str, int], now: float,
              ceiling: Callable[[tuple[str, int]], int]) -> None:
        """A heartbeat from ``addr``; (re)start PMTU discovery when the path (re)appears."""
        fresh = self.last_heard is None or now - self.last_heard > PATH_OK_FOR
        if addr != self.addr:
            self.learned = addr  # what the neighbour's packets show beats what gossip said
            self.addr = addr
            fresh = True
        if fresh or self.pmtu is None:
            self.pmtu = PathMtu(ceiling(addr))
        self.last_heard = now

    @property
    def piece_size(self) -> int:
        """The largest datagram the path carries without IP fragmentation."""
        return 1472 if self.pmtu is None else self.pmtu.pmtu

    @property
    def max_datagram(self) -> int:
        # Before discovery, the largest datagram a 1500-byte underlay carries without
        # fragmentation: the default container MTU (1410) is chosen so one frame fits it.
        return 1472 if self.pmtu is None else self.pmtu.max_datagram

    def describe(self, now: float) -> dict[str, Any]:
        pm = self.pmtu
        return {"state": self.state(now), "pmtu": self.max_datagram if pm is None else pm.pmtu,
                "frag_ok": bool(pm is not None and pm.frag_ok)}


def _gro_size(anc: list) -> int:
    """The segment size of a GRO-coalesced read (0 when the read is one datagram)."""
    for level, kind, value in anc:
        if level == SOL_UDP and kind == UDP_GRO and len(value) in (2, 4):
            return int.from_bytes(value, sys.byteorder)  # an int (a u16 on old kernels)
    return 0


def route_mtu(addr: tuple[str, int]) -> int:
    """The MTU of our route to ``addr`` (what the kernel would use), 1500 if unknown."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))
    except OSError:
        return 1500


class ForwarderActor(Actor):
    NAME = "forwarder"

    def setup(self) -> None:
        tune_malloc()
        self.me = str(self.config["peer_name"])
        self.me_wire = peer_to_wire(self.me)
        self.port = int(self.config.get("port", PORT))
        self.counters = Counters()
        self.macs = MacCache()
        self.core = Forwarder(self.me_wire, self.macs, broadcast_peer=BROADCAST_PEER)
        self.peers: dict[int, str] = {}  # every peer the routes know: wire id -> name
        self.paths: dict[int, Path] = {}  # direct neighbours
        self.routes_data: dict[str, Any] | None = None
        self.published_paths: dict[str, Any] | None = None
        self.token = self.inc & 0xFFFFFFFFFFFFFFFF

        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt, force in ((socket.SO_RCVBUF, 33), (socket.SO_SNDBUF, 32)):  # *BUFFORCE
            try:
                self.udp.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
            except OSError:
                self.udp.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        # Frames and frag tests go without DF (the kernel may fragment them); only PMTU
        # probes switch to DF for the one send.
        self.udp.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        self.udp.bind(("0.0.0.0", self.port))
        self.udp.setblocking(False)
        # Datagrams bigger than the path MTU go as FRAGMENT pieces in one GSO send; GRO gives
        # them (and runs of same-sized datagrams) back in one read. Both are optional: without
        # GRO pieces arrive one by one, without GSO (first EINVAL/EIO) big datagrams go whole
        # and the kernel fragments them.
        self.gso = True
        self.gro = True
        try:
            self.udp.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            self.gro = False
        self.reassembler = Reassembler()
        self.frag_id = self.inc  # random start: a restarted forwarder does not reuse ids soon

        self.frames_out = self.ctx.socket(zmq.PULL)
        self.frames_out.setsockopt(zmq.RCVHWM, QUEUE_HWM)
        self.frames_out.setsockopt(zmq.LINGER, 0)
        self.frames_out.connect(self.endpoints.frames_out)
        self.frames_in = self.ctx.socket(zmq.PUSH)
        self.frames_in.setsockopt(zmq.SNDHWM, QUEUE_HWM)
        self.frames_in.setsockopt(zmq.LINGER, 0)
        self.frames_in.connect(self.endpoints.frames_in)
        self.events = self.subscribe_events("routes")

        self.encrypt = bool(self.config.get("encryption"))
        self.seal_extra = 0
        if self.encrypt:
            self.seal_extra = SEAL_EXTRA
            self.sealed_prefix = struct.pack("!BBBBQ", VERSION, FRAMES, ENCRYPTED, 0,
                                             self.me_wire)
            self.crypto = self.ctx.socket(zmq.DEALER)
            self.crypto.setsockopt(zmq.SNDHWM, QUEUE_HWM)
            self.crypto.setsockopt(zmq.RCVHWM, QUEUE_HWM)
            self.crypto.setsockopt(zmq.LINGER, 0)
            self.crypto.connect(self.endpoints.crypto)
            self.add_reader(self.crypto, self._on_crypto)

        self.add_reader(self.udp.fileno(), self._on_udp)
        self.add_reader(self.frames_out, self._on_captured)
        self.add_reader(self.events, self._on_event)
        self.every(HEARTBEAT_INTERVAL, self._heartbeats, first=0.0)
        self.every(PMTU_POLL, self._poll_pmtu)
        self.every(STATS_INTERVAL, self._stats)
        self.every(EXPIRE_INTERVAL, self._expire)

    # --- routes --------------------------------------------------------------------------------

    def _on_event(self) -> None:
        while True:
            try:
                _topic, data = self.events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            try:
                env = bus.decode(data)
                payload = env.body.get("data")
                if isinstance(payload, dict):
                    self.apply_routes(payload)
            except (bus.EnvelopeError, ValueError, TypeError, KeyError, AttributeError) as exc:
                self.log.warning("bad_routes_event", reason=str(exc))

    def apply_routes(self, data: Mapping[str, Any]) -> None:
        if data.get("local") != self.me:
            self.log.warning("routes_for_another_peer", local=data.get("local"))
            return
        if data == self.routes_data:
            return  # the periodic backstop: nothing changed
        now = time.monotonic()
        wire: dict[str, int] = {}

        def w(name: Any) -> int | None:
            if name not in wire:
                try:
                    wire[name] = peer_to_wire(name)
                except (ValueError, AttributeError, TypeError):
                    self.log.warning("bad_peer_name", peer=repr(name))
                    return None
            return wire[name]

        peers: dict[int, str] = {}
        udp: dict[int, tuple[str, int] | None] = {}
        for name, info in (data.get("peers") or {}).items():
            pid = w(name)
            if pid is not None:
                peers[pid] = name
                udp[pid] = parse_ipv4_endpoint(info.get("udp")) if isinstance(info, dict) else None
        unicast = {}
        for dst, hop in (data.get("unicast") or {}).items():
            d, h = w(dst), w(hop)
            if d is not None and h is not None:
                unicast[d] = h
        broadcast = {}
        for src, hops in (data.get("broadcast") or {}).items():
            s = w(src)
            if s is not None:
                broadcast[s] = [h for h in map(w, hops) if h is not None]
        self.core.set_table(RouteTable(unicast, broadcast))

        neighbours = {pid for pid, a in udp.items() if a is not None}
        neighbours.update(unicast.values())
        for hops in broadcast.values():
            neighbours.update(hops)
        neighbours.discard(self.me_wire)
        for pid in list(self.paths):
            if pid not in neighbours:
                del self.paths[pid]
        for pid in neighbours:
            name = peers.get(pid) or peer_from_wire(pid)
            path = self.paths.get(pid)
            if path is None:
                self.paths[pid] = Path(name, pid, udp.get(pid), now)
            else:
                path.set_configured(udp.get(pid))
        for pid in self.peers.keys() - peers.keys():
            gone = self.macs.delete_peer(pid)
            self.log.info("peer_gone", peer=self.peers[pid], macs=len(gone))
        self.peers = peers
        self.routes_data = dict(data)
        self.log.info("routes_applied", version=data.get("version"), peers=len(peers),
                      neighbours=len(self.paths))

    # --- frames from our bridge ------------------------------------------------------------------

    def _on_captured(self) -> None:
        plan = Plan()
        captured = self.core.captured
        now = time.monotonic()
        n = 0
        for parts in drain(self.frames_out, BATCHES_PER_WAKEUP):
            try:
                _, frames = decode_batch(parts)
            except BatchError:
                self.counters.drop(BAD_BATCH)
                continue
            n += len(frames)
            captured(frames, now, plan)
        if n:
            self.counters.add("captured", n)
            self._execute(plan, now)

    # --- datagrams from the network --------------------------------------------------------------

    def _on_udp(self) -> None:
        plan = Plan()
        now = time.monotonic()
        recvmsg = self.udp.recvmsg
        counters = self.counters
        sealed: dict[int, list[memoryview]] = {}
        nframes = 0
        datagram = self._datagram
        received = self.core.received
        peers, paths, me, encrypt = self.peers, self.paths, self.me_wire, self.encrypt
        for _ in range(DATAGRAMS_PER_WAKEUP):
            try:
                data, anc, _flags, addr = recvmsg(65535, GRO_CMSG_SPACE)
            except BlockingIOError:
                break
            except OSError:  # e.g. a queued ICMP error; the socket itself is fine
                counters.add("rx_errors")
                continue
            if anc and len(data) > (size := _gro_size(anc)) > 0:
                # several datagrams of one flow coalesced by GRO: all but the last are `size`
                for item in split_coalesced(data, size):
                    if type(item) is Piece:
                        nframes += self._piece(item, addr, now, plan, sealed)
                    else:
                        nframes += datagram(item, addr, now, plan, sealed)
                continue
            # the common case inline (clear frames from a known peer): no call per datagram
            try:
                hdr = parse_header(data)
            except SleeveError:
                counters.drop(MALFORMED)
                continue
            if hdr.kind == FRAMES and not hdr.flags and not encrypt and hdr.sender in peers \
                    and hdr.sender != me:
                try:
                    fh, frames = unpack_frames(hdr, memoryview(data)[OUTER_LEN:])
                except SleeveError:
                    counters.drop(MALFORMED)
                    continue
                path = paths.get(hdr.sender)
                if path is not None and path.last_heard is not None:
                    path.last_heard = now  # traffic proves the path as well as heartbeats
                received(fh.src_peer, fh.dst_peer, frames, now, plan)
                nframes += len(frames)
            else:
                nframes += datagram(data, addr, now, plan, sealed)
        if nframes:
            counters.add("rx", nframes)
        if sealed:
            for sender, blobs in sealed.items():
                self._to_crypto(OPEN, self.peers[sender], blobs, sender)
        if plan.inject or plan.send or plan.drops:
            self._execute(plan, now)

    def _piece(self, piece: Piece, addr: tuple[str, int], now: float, plan: Plan,
               sealed: dict[int, list[memoryview]]) -> int:
        """A piece (or run of pieces) of a datagram bigger than the path MTU."""
        if piece.sender not in self.peers or piece.sender == self.me_wire:
            self.counters.drop(UNKNOWN_SENDER)
            return 0
        reassembler = self.reassembler
        dropped = reassembler.dropped
        whole = reassembler.add(piece, now)
        if reassembler.dropped != dropped:
            self.counters.drop(REASSEMBLY_FAILED, reassembler.dropped - dropped)
        if whole is None:
            return 0
        try:
            if parse_header(whole).kind == FRAGMENT:
                raise SleeveError("a reassembled datagram must not be a fragment")
        except SleeveError:
            self.counters.drop(MALFORMED)
            return 0
        return self._datagram(whole, addr, now, plan, sealed)

    def _datagram(self, data: Any, addr: tuple[str, int], now: float, plan: Plan,
                  sealed: dict[int, list[memoryview]]) -> int:
        """One datagram from the network; returns how many frames it carried in clear."""
        counters = self.counters
        try:
            hdr = parse_header(data)
            if hdr.sender not in self.peers or hdr.sender == self.me_wire:
                counters.drop(UNKNOWN_SENDER)
                return 0
            if hdr.kind == FRAGMENT:
                return self._piece(parse_piece(hdr, data), addr, now, plan, sealed)
            if hdr.flags & ENCRYPTED:
                if self.encrypt and hdr.kind == FRAMES:
                    blobs = sealed.get(hdr.sender)
                    if blobs is None:
                        blobs = sealed[hdr.sender] = []
                    blobs.append(memoryview(data)[SEALED_PREFIX_LEN:])
                else:
                    counters.drop(SEALED)
                return 0
            body = memoryview(data)[OUTER_LEN:]
            if hdr.kind == FRAMES:
                if self.encrypt:
                    counters.drop(PLAINTEXT)
                    return 0
                fh, frames = unpack_frames(hdr, body)
                path = self.paths.get(hdr.sender)
                if path is not None and path.last_heard is not None:
                    path.last_heard = now  # traffic proves the path as well as heartbeats
                self.core.received(fh.src_peer, fh.dst_peer, frames, now, plan)
                return len(frames)
            self._on_control(unpack_control_body(hdr, body, len(data)), addr, now)
        except SleeveError:
            counters.drop(MALFORMED)
        return 0

    # --- the crypto actor ------------------------------------------------------------------------

    def _to_crypto(self, op: str, peer: str, payloads: list, tag: int) -> None:
        """Queue batches for the crypto actor; a full queue drops them (never block)."""
        send = self.crypto.send_multipart
        for i in range(0, len(payloads), MAX_BATCH):
            chunk = payloads[i : i + MAX_BATCH]
            try:
                send(encode_request(op, peer, chunk, tag), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.counters.drop(CRYPTO_QUEUE_FULL, len(chunk))

    def _on_crypto(self) -> None:
        plan = Plan()
        now = time.monotonic()
        counters = self.counters
        received = self.core.received
        nframes = 0
        for parts in drain(self.crypto, CRYPTO_REPLIES_PER_WAKEUP):
            try:
                reply, results = decode_reply(parts)
            except CryptoProtoError:
                counters.drop(BAD_CRYPTO_REPLY)
                continue
            if reply.failed:
                counters.drop(CRYPTO_FAILED, reply.failed)
            path = self.paths.get(reply.tag) if isinstance(reply.tag, int) else None
            if reply.op == SEAL:
                self._send_sealed(path, results)
                continue
            if reply.tag not in self.peers:
                counters.drop(UNKNOWN_SENDER, len(results) - reply.failed)
                continue
            opened = False
            for plain in results:
                if not plain:
                    continue
                try:
                    fh, frames = unpack_frames(_OPENED, plain)
                except SleeveError:
                    counters.drop(MALFORMED)
                    continue
                opened = True
                nframes += len(frames)
                received(fh.src_peer, fh.dst_peer, frames, now, plan)
            if opened and path is not None and path.last_heard is not None:
                path.last_heard = now  # authentic traffic proves the path as well as heartbeats
        if nframes:
            counters.add("rx", nframes)
        if plan.inject or plan.send or plan.drops:
            self._execute(plan, now)

    def _send_sealed(self, path: Path | None, results: list) -> None:
        if path is None or path.addr is None:
            self.counters.drop(NO_ADDRESS, sum(1 for r in results if r))
            return
        sendmsg = self.udp.sendmsg
        prefix = self.sealed_prefix
        addr = path.addr
        n = nbytes = 0
        piece = path.piece_size
        for blob in results:
            if not blob:
                continue
            try:
                if len(blob) + SEALED_PREFIX_LEN > piece and self.gso:
                    nbytes += self._send_pieces(b"".join((prefix, blob)), piece, addr)
                else:
                    # gather the clear prefix and the sealed blob without copying them together
                    nbytes += sendmsg((prefix, blob), (), 0, addr)
            except OSError:
                self.counters.drop(SEND_FAILED)
                continue
            n += 1
        self.counters.add("tx_datagrams", n)
        self.counters.add("tx_bytes", nbytes)

    def _on_control(self, msg: Any, addr: tuple[str, int], now: float) -> None:
        kind = msg.kind
        self.counters.add("control_rx")
        path = self.paths.get(msg.sender)
        if kind in (HEARTBEAT, HEARTBEAT_ACK):
            if kind == HEARTBEAT:
                self._send_control(HEARTBEAT_ACK, addr, msg.token)
            if path is not None:
                was_ok = path.state(now) == "ok"
                path.heard(addr, now, self._ceiling)
                if not was_ok:
                    self.log.info("path_up", peer=path.name, addr=f"{addr[0]}:{addr[1]}")
                    self._publish_paths(now)
        elif kind == PMTU_PROBE:
            self._send_control(PMTU_ACK, addr, msg.token, value=msg.size)
        elif kind == FRAG_TEST:
            self._send_control(FRAG_TEST_ACK, addr, msg.token, value=msg.size)
        elif path is not None and path.pmtu is not None:  # PMTU_ACK / FRAG_TEST_ACK
            path.pmtu.on_ack(kind, msg.token, msg.value, now)

    def _ceiling(self, addr: tuple[str, int]) -> int:
        return max(600, min(MAX_DATAGRAM, route_mtu(addr) - UDP_IP_OVERHEAD))

    def _send_control(self, kind: int, addr: tuple[str, int], token: int, *, value: int = 0,
                      size: int = 0, df: bool = False) -> bool:
        msg = build_control(kind, sender=self.me_wire, token=token, value=value, size=size)
        try:
            if df:
                self.udp.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
            try:
                self.udp.sendto(msg, addr)
            finally:
                if df:
                    self.udp.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
        except OSError as exc:
            if df and exc.errno == errno.EMSGSIZE:
                raise
            self.counters.add("control_send_errors")
            return False
        self.counters.add("control_tx")
        return True

    # --- carrying out a plan ---------------------------------------------------------------------

    def _execute(self, plan: Plan, now: float) -> None:
        counters = self.counters
        if plan.drops:
            counters.add_drops(plan.drops)
        inject = plan.inject
        for (hop, src, dst), frames in plan.send.items():
            path = self.paths.get(hop)
            if path is None or path.addr is None:
                counters.drop(NO_ADDRESS, len(frames))
                continue
            self._send_frames(path, src, dst, frames, inject)
        if inject:
            self._inject(inject)
        if plan.learned and self.config.get("debug"):
            for mac, peer, how in plan.learned:
                self.log.debug("mac_learned", mac=mac.hex(":"), peer=peer_from_wire(peer)
                               if peer else self.me, how=how.name.lower())

    def _send_frames(self, path: Path, src: int, dst: int, frames: list, inject: list) -> None:
        max_dg = path.max_datagram - self.seal_extra  # room for the MAC when sealing
        packed = pack_datagram(frames, max_dg, sender=self.me_wire, src_peer=src, dst_peer=dst,
                               seq=path.seq)
        datagrams = packed.datagrams
        sent = len(frames) - len(packed.oversized)
        if packed.oversized:
            # Bigger than the path allows: segment, fragment or answer with ICMP (slow path).
            budget = frame_budget(max_dg)
            fitted: list = []
            for frame in packed.oversized:
                fit = fit_frame(frame, budget)
                if fit.drop is not None:
                    self.counters.drop(fit.drop)
                fitted.extend(fit.send)
                inject.extend(fit.inject)
            if fitted:
                self.counters.add("fitted", len(fitted))
                more = pack_datagram(fitted, max_dg, sender=self.me_wire, src_peer=src,
                                     dst_peer=dst, seq=path.seq + len(datagrams))
                datagrams = datagrams + more.datagrams
                sent += len(fitted)
        path.seq += len(datagrams)
        if self.encrypt:
            # the crypto actor seals the bodies; its reply is sent on in _send_sealed
            self._to_crypto(SEAL, path.name, [memoryview(d)[OUTER_LEN:] for d in datagrams],
                            path.wire)
            self.counters.add("tx", sent)
            return
        sendto = self.udp.sendto
        addr = path.addr
        piece = path.piece_size
        nbytes = 0
        for i, d in enumerate(datagrams):
            try:
                if len(d) > piece and self.gso:
                    self._send_pieces(d, piece, addr)
                else:
                    sendto(d, addr)
            except OSError:
                # EAGAIN: the socket buffer is full (we never block); others: no route etc.
                self.counters.drop(SEND_FAILED, len(datagrams) - i)
                break
            nbytes += len(d)
        self.counters.add("tx", sent)
        self.counters.add("tx_datagrams", len(datagrams))
        self.counters.add("tx_bytes", nbytes)

    def _send_pieces(self, datagram: Any, piece: int, addr: tuple[str, int]) -> int:
        """Send a datagram bigger than the path MTU as FRAGMENT pieces, one GSO send per group
        of up to 64; where the kernel refuses GSO, send it whole from now on (the kernel then
        fragments it, which the frag test showed the path carries)."""
        self.frag_id = frag_id = (self.frag_id + 1) & 0xFFFFFFFFFFFFFFFF
        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", piece))]
        sendmsg = self.udp.sendmsg
        try:
            for parts in split_datagram(datagram, piece, sender=self.me_wire, frag_id=frag_id):
                sendmsg(parts, cmsg, 0, addr)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT):
                raise
            self.gso = False
            self.log.warning("udp_gso_unavailable", reason=str(exc))
            self.udp.sendto(datagram, addr)
        return len(datagram)

    def _inject(self, frames: list) -> None:
        send = self.frames_in.send_multipart
        for i in range(0, len(frames), MAX_BATCH):
            chunk = frames[i : i + MAX_BATCH]
            try:
                send(encode_batch({}, chunk), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.counters.drop(INJECT_QUEUE_FULL, len(chunk))
                continue
            self.counters.add("injected", len(chunk))

    # --- timers ------------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        now = time.monotonic()
        for path in self.paths.values():
            if path.addr is not None:
                self._send_control(HEARTBEAT, path.addr, self.token)
        self._publish_paths(now)

    def _poll_pmtu(self) -> None:
        now = time.monotonic()
        for path in self.paths.values():
            pm = path.pmtu
            # Probe only live paths: lost probes to a dead peer would shrink the estimate.
            if pm is None or path.addr is None or path.state(now) != "ok":
                continue
            if pm.next_deadline() > now:
                continue
            for probe in pm.poll(now):
                try:
                    self._send_control(probe.kind, path.addr, probe.token, value=probe.size,
                                       size=probe.size, df=probe.kind == PMTU_PROBE)
                except OSError:  # EMSGSIZE: bigger than our own link
                    pm.on_too_big(probe.size, now)
        self._publish_paths(now)

    def _paths_view(self, now: float) -> dict[str, Any]:
        return {p.name: p.describe(now) for p in self.paths.values()}

    def _publish_paths(self, now: float) -> None:
        view = self._paths_view(now)
        if view != self.published_paths:
            self.published_paths = view
            self.publish("paths", {"paths": view})
            self.log.info("paths_changed", paths=view)

    def _stats(self) -> None:
        snap = self.counters.snapshot()
        self.log.info("stats", rx=snap.get("rx", 0), tx=snap.get("tx", 0),
                      dropped=snap["dropped"], drops=snap["drops"], macs=len(self.macs))

    def _expire(self) -> None:
        self.macs.expire(time.monotonic())

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        paths = {}
        for p in self.paths.values():
            d = p.describe(now)
            d["addr"] = None if p.addr is None else f"{p.addr[0]}:{p.addr[1]}"
            paths[p.name] = d
        return {"macs": len(self.macs), "counters": self.counters.snapshot(), "paths": paths}

    def teardown(self) -> None:
        self.udp.close()


if __name__ == "__main__":
    sys.exit(main(ForwarderActor))
