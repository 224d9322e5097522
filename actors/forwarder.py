"""The forwarder actor: the sleeve's UDP side and the per-frame forwarding loop.

Sockets:

* UDP ``0.0.0.0:port`` (6783): sleeve datagrams (:mod:`weavenet.dataplane.sleeve`) to and from
  the neighbours, with UDP GSO/GRO where the kernel has them; its options and sends are in
  :mod:`weavenet.dataplane.udp_socket`, the receive loop is here. The socket is the
  supervisor's, inherited (it outlives us, queued datagrams included); the crypto actor sends
  sealed datagrams on it too. Started alone (tests), we open it ourselves.
* PULL ``Endpoints.frames_out`` (capture binds it): batches of frames captured on our bridge.
* The TAP ``weave-tap``, a queue of its own, write-only: every frame for our bridge (received
  from a peer, opened by crypto, or made here, like an ICMP "fragmentation needed") is written
  to it here, without blocking; a refusal is a counted drop (``tap_write_refused``). The queue
  is *detached* (TUNSETQUEUE IFF_DETACH_QUEUE, :func:`weavenet.host.tap.open_tap_handle`):
  writes through it enter the bridge, but the kernel steers the frames the bridge sends to
  the TAP only to attached queues, i.e. capture's, so we never have to read it. This replaces
  the older design where received frames were "injected through capture" (a ZeroMQ hop back
  to capture, and nothing delivered while capture restarted). netconf makes the TAP; until it
  can be opened (retried every ``TAP_RETRY`` s) such frames are dropped as
  ``tap_unavailable``, and after ``TAP_GIVE_UP`` s without it the forwarder exits for the
  supervisor to restart it. Counters: ``injected`` and ``injected_bytes``.
* SUB ``Endpoints.events``, topic "routes": the gossip actor's routes, with the peers on the
  fast datapath (``fastdp``: the sleeve sends local broadcasts only to the others, and asks
  netconf through the supervisor, ``FastdpMacs``, to move to the kernel the MACs of unicast
  flows it still carries to a fastdp peer)
  (:mod:`weavenet.dataplane.route_update`), and "actor.ready" (a restarted gossip is told the
  paths at once). At start it asks gossip for the routes ("routes.get",
  :mod:`weavenet.dataplane.resync`) rather than wait for the next event; it answers gossip's
  "paths.get" with its paths. Publishes "paths" (each neighbour's UDP path: ok, probing or
  unreachable, PMTU) on change: gossip lets a connection carry traffic only while its path is
  ok. A control datagram (heartbeat, PMTU probe, frag test, acks) counts only if tagged with
  the control keys of our TCP connection to its sender, which the routes event carries
  (:mod:`weavenet.dataplane.control_auth`): others are dropped and counted
  (``control_forged``, ``control_replayed``, ``control_no_key``), never answered.
* DEALER ``Endpoints.crypto``, only with ``launch.encryption``: FRAMES bodies to seal and
  send, batched per neighbour with the neighbour's address and piece size (one way: the crypto
  actor sends them on the shared socket and counts its own failures), and sealed blobs to open,
  whose opened frames come back to be delivered or relayed (datagram layout:
  :mod:`weavenet.dataplane.sealed`; messages: :mod:`weavenet.crypto.protocol`). Clear FRAMES
  datagrams are dropped when encrypting (no downgrade), sealed ones when not.

A thin loop around sans-IO cores: captured frames go through
:class:`weavenet.dataplane.forwarding.Forwarder` and leave as sleeve datagrams to each next
hop's :class:`weavenet.dataplane.path.Path` (address, liveness, PMTU); datagrams from the
network are sorted by :class:`weavenet.dataplane.inbound.Inbound` and either written to our
TAP or relayed. No queue is waited on: a batch the crypto actor's full queue refuses is held
and the forwarder stops reading its inputs until the queue has room
(:class:`weavenet.dataplane.queues.Backlog`), so the overload waits in kernel buffers.
The core runs on wire peer ids (48-bit ints, see :func:`weavenet.dataplane.sleeve.peer_to_wire`)
so nothing is converted per datagram; names only appear in routes, status and events.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

import zmq

from weavenet.crypto.protocol import (
    OPEN,
    CryptoProtoError,
    decode_reply,
    encode_request,
    encode_send,
)
from weavenet.dataplane import sleeve
from weavenet.dataplane.batch import BatchError, decode_batch, tune_malloc
from weavenet.dataplane.control_auth import CONTROL_NO_KEY
from weavenet.dataplane.forwarding import Forwarder, Plan
from weavenet.dataplane.inbound import MALFORMED, UNKNOWN_SENDER, Arrivals, Inbound, reply_to
from weavenet.dataplane.maccache import MacCache
from weavenet.dataplane.outbound import pack_for_path
from weavenet.dataplane.path import Addr, Path, ceiling_for, describe_paths, reconcile
from weavenet.dataplane.queues import Backlog, batches, connect_queue
from weavenet.dataplane.resync import PathsQuery, RoutesQuery
from weavenet.dataplane.route_update import decode_route_update
from weavenet.dataplane.sealed import SEAL_EXTRA
from weavenet.dataplane.sleeve import (
    FRAMES,
    OUTER_LEN,
    Control,
    Piece,
    SleeveError,
    parse_header,
    split_coalesced,
    unpack_frames,
)
from weavenet.dataplane.udp import GRO_CMSG_SPACE, gro_size
from weavenet.dataplane.udp_port import configure, inherited_udp
from weavenet.dataplane.udp_socket import UdpSocket, route_mtu
from weavenet.host import tap
from weavenet.host.tap import ROUTER_PORT
from weavenet.runtime.actor import Actor, drain, handles, main
from weavenet.runtime.bus import Envelope
from weavenet.runtime.counters import Counters
from weavenet.runtime.events import on_events
from weavenet.runtime.fastdp import FastdpMacs
from weavenet.runtime.ready import on_ready
from weavenet.runtime.relay import Relay

DATAGRAMS_PER_WAKEUP = 256  # bound the work per poll so capture's queue and timers get a turn
# ... and the bytes: what is read is held until the wakeup's plan runs, and 256 GRO reads of
# 64 KB made the receiving router's RSS jump by ~10 MB under TCP
BYTES_PER_WAKEUP = 1 << 20
BATCHES_PER_WAKEUP = 16
# replies of up to MESSAGE_BYTES each: what a wakeup holds until its plan runs
CRYPTO_REPLIES_PER_WAKEUP = 8
HEARTBEAT_INTERVAL = 0.5  # see weavenet.dataplane.path.PATH_OK_FOR
PMTU_POLL = 0.1
STATS_INTERVAL = 30.0
EXPIRE_INTERVAL = 60.0

# drop reasons of the actor (the sans-IO ones are in weavenet.dataplane's forwarding, pmtu and
# inbound; a refused send is udp_socket's)
CRYPTO_QUEUE_FULL = "crypto_queue_full"  # held past the backlog's limit, or given up
# s: inputs paused for a crypto actor that takes nothing this long (dead: it restarts within
# ~0.3 s); well under PATH_OK_FOR, as heartbeats are not read meanwhile
CRYPTO_GIVE_UP = 0.5
CRYPTO_FAILED = "crypto_failed"  # opening: no keys yet, forged, replayed (crypto counts why)
BAD_CRYPTO_REPLY = "bad_crypto_reply"  # malformed, or not an answer to "open"
NO_ADDRESS = "no_address"  # next hop whose UDP address we do not know
TAP_UNAVAILABLE = "tap_unavailable"  # frames for our bridge while the TAP is not open
TAP_WRITE_REFUSED = "tap_write_refused"  # the kernel refused one (full, malformed, port down)
TAP_RETRY = 0.2  # seconds between attempts to open the TAP (netconf makes it)
TAP_GIVE_UP = 10.0  # without the TAP this long, exit: the supervisor restarts us
BAD_BATCH = "bad_batch"
MOVE_RETRY = 1.0  # a MAC at a fastdp peer still on the sleeve after this is asked to move again


class ForwarderActor(Actor):
    NAME = "forwarder"

    def setup(self) -> None:
        tune_malloc()
        self.me = str(self.launch.peer_name)
        self.me_wire = sleeve.peer_to_wire(self.me)
        self.port = self.launch.port
        self.encrypt = self.launch.encryption
        self.seal_extra = SEAL_EXTRA if self.encrypt else 0  # room for the MAC when sealing
        self.counters = Counters()
        self.macs = MacCache()
        self.core = Forwarder(self.me_wire, self.macs, broadcast_peer=sleeve.BROADCAST_PEER)
        # the fast datapath: peers on it (wire id -> underlay address, from the routes event),
        # and the MACs at them that netconf was asked to move to the VXLAN port, and when
        self.fastdp_ips: dict[int, str] = {}
        self.moves_asked: dict[bytes, float] = {}
        self.netconf: Relay[None] = Relay(self, "netconf")
        self.peers: dict[int, str] = {}  # every peer the routes know: wire id -> name
        self.paths: dict[int, Path] = {}  # direct neighbours
        self.inbound = Inbound(self.me_wire, encrypt=self.encrypt, received=self.core.received,
                               paths=self.paths)
        self.routes_data: dict[str, Any] | None = None
        self.published_paths: dict[str, Any] | None = None
        self.token = self.inc & 0xFFFFFFFFFFFFFFFF
        sock = inherited_udp(self.port)
        if sock is not None:
            configure(sock)  # the supervisor set them; a restarted forwarder asserts them again
        self.udp = UdpSocket(self.port, sender=self.me_wire, frag_id=self.inc,
                             counters=self.counters, log=self.log, sock=sock)
        self.frames_out = connect_queue(self.ctx, zmq.PULL, self.endpoints.frames_out)
        self.tap: tap.TapHandle | None = None
        self.tap_missing_since = time.monotonic()
        self._open_tap()
        self.every(TAP_RETRY, self._open_tap)
        self.events = on_events(self, self._on_routes, "routes")
        if self.encrypt:
            self.crypto = connect_queue(self.ctx, zmq.DEALER, self.endpoints.crypto)
            self.add_reader(self.crypto, self._on_crypto)
            self.crypto_backlog = Backlog(self.crypto, self.counters, CRYPTO_QUEUE_FULL)
            self.crypto_paused = 0  # a count of pauses, so that an old give-up timer is ignored
        self.add_reader(self.udp.fileno(), self._on_udp)
        self.add_reader(self.frames_out, self._on_captured)
        # A restarted gossip knows nothing of the paths: tell it now, not at the next change.
        # After a restart: the routes now, not at gossip's next event (see resync); and again
        # when gossip comes up (it may start after us).
        self.gossip: Relay[None] = Relay(self, "gossip")
        self.gossip.send(RoutesQuery(), None)
        self.ready_events = on_ready(self, {"gossip": self._gossip_ready})
        self.every(HEARTBEAT_INTERVAL, self._heartbeats, first=0.0)
        self.every(PMTU_POLL, self._poll_pmtu)
        self.every(STATS_INTERVAL, self._stats)
        self.every(EXPIRE_INTERVAL, lambda: self.macs.expire(time.monotonic()))

    # --- routes --------------------------------------------------------------------------------

    def _on_routes(self, _topic: str, data: dict[str, Any]) -> None:
        try:
            self.apply_routes(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.log.warning("bad_routes_event", reason=str(exc))

    def apply_routes(self, data: Mapping[str, Any]) -> None:
        if data.get("local") != self.me:
            self.log.warning("routes_for_another_peer", local=data.get("local"))
            return
        if data == self.routes_data:
            return  # the periodic backstop: nothing changed
        update = decode_route_update(data, self.me_wire)
        for name in update.bad_names:
            self.log.warning("bad_peer_name", peer=name)
        self.core.set_table(update.table)
        # the peers on the fast datapath (gossip adds them to the routes event)
        ids = {name: pid for pid, name in update.peers.items()}
        fastdp = data.get("fastdp")
        if fastdp is None:
            # a restarted gossip that has not yet told netconf anything: the kernel still has
            # the flood entries our set describes (weavenet.mesh.fastdp_links.FastdpLinks.peers)
            self.fastdp_ips = {p: ip for p, ip in self.fastdp_ips.items() if p in update.peers}
        else:
            fastdp = fastdp if isinstance(fastdp, Mapping) else {}
            self.fastdp_ips = {ids[n]: str(ip) for n, ip in fastdp.items() if n in ids}
        self.core.set_fastdp(self.fastdp_ips)
        new = update.neighbours.keys() - self.paths.keys()
        reconcile(self.paths, update.neighbours, time.monotonic(), update.keys)
        # A new neighbour's path is proven now, not at the next heartbeat round: a relaunched
        # peer carries traffic half a second sooner.
        self._send_heartbeats(self.paths[w] for w in new)
        for pid in self.peers.keys() - update.peers.keys():
            gone = self.macs.delete_peer(pid)
            self.log.info("peer_gone", peer=self.peers[pid], macs=len(gone))
        self.peers = self.inbound.peers = update.peers
        self.routes_data = dict(data)
        self.log.info("routes_applied", version=data.get("version"), peers=len(update.peers),
                      neighbours=len(self.paths))

    def on_reply(self, env: Envelope) -> None:
        answer = self.gossip.answer(env)
        if answer is not None and answer[1] is None and env.body:  # {}: gossip holds them
            self._on_routes("routes", env.body)
            return
        answer = self.netconf.answer(env)
        if answer is not None and answer[1] is not None:
            self.log.warning("fastdp_macs_failed", reason=answer[1])

    @handles(PathsQuery)
    def on_paths_query(self, req: PathsQuery) -> dict[str, Any]:
        return {"paths": describe_paths(self.paths.values(), time.monotonic(), with_addr=True)}

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
        # The receive hot loop, kept in one piece on purpose: the common datagram (clear frames
        # from a known peer) is decoded inline, with no call per datagram beyond the decoding
        # and the core's; everything else goes to self.inbound.
        plan = Plan()
        out = Arrivals(plan)
        now = time.monotonic()
        recvmsg = self.udp.sock.recvmsg
        counters = self.counters
        nframes = nbytes = ndatagrams = 0
        inbound = self.inbound
        datagram = inbound.datagram
        received = self.core.received
        peers, paths, me, encrypt = self.peers, self.paths, self.me_wire, self.encrypt
        # A plain socket, not ZeroMQ, so not drain(): bounded by a count instead.
        for _ in range(DATAGRAMS_PER_WAKEUP):
            if nbytes >= BYTES_PER_WAKEUP:
                break
            try:
                data, anc, _flags, addr = recvmsg(65535, GRO_CMSG_SPACE)
            except BlockingIOError:
                break
            except OSError:  # e.g. a queued ICMP error; the socket itself is fine
                counters.add("rx_errors")
                continue
            nbytes += len(data)
            ndatagrams += 1
            if anc and len(data) > (size := gro_size(anc)) > 0:
                # several datagrams of one flow coalesced by GRO: all but the last are `size`
                for item in split_coalesced(data, size):
                    if type(item) is Piece:
                        nframes += inbound.piece(item, addr, now, out)
                    else:
                        nframes += datagram(item, addr, now, out)
                continue
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
                    path.last_heard = now  # Path.traffic() inline
                received(fh.src_peer, fh.dst_peer, frames, now, plan)
                nframes += len(frames)
            else:
                nframes += datagram(data, addr, now, out)
        if nframes:
            counters.add("rx", nframes)
        if ndatagrams:
            counters.add("rx_datagrams", ndatagrams)  # a GRO-coalesced run counts once
            counters.add("rx_bytes", nbytes)
        for msg, addr in out.controls:
            self._on_control(msg, addr, now)
        for sender, blobs in out.sealed.items():
            self._to_open(sender, blobs)
        if plan.inject or plan.send or plan.drops:
            self._execute(plan, now)

    def _on_control(self, msg: Control, addr: Addr, now: float) -> None:
        path = self.paths.get(msg.sender)
        # only the neighbour at the other end of our TCP connection is answered or moves its
        # path; anyone else merely naming it is counted (weavenet.dataplane.control_auth)
        reason = CONTROL_NO_KEY if path is None else path.verify(msg)
        if reason is not None or path is None:
            self.counters.drop(reason or CONTROL_NO_KEY)
            return
        self.counters.add("control_rx")
        reply = reply_to(msg)
        key = path.send_key
        if reply is not None and key is not None:  # verified: it has keys
            self.udp.send_control(reply[0], addr, msg.token, key, value=reply[1])
        if msg.kind in (sleeve.HEARTBEAT, sleeve.HEARTBEAT_ACK):
            if path.heard(addr, now, self._ceiling):
                self.log.info("path_up", peer=path.name, addr=f"{addr[0]}:{addr[1]}")
                self._publish_paths(now)
        elif msg.kind in (sleeve.PMTU_ACK, sleeve.FRAG_TEST_ACK) and path.pmtu is not None:
            path.pmtu.on_ack(msg.kind, msg.token, msg.value, now)

    def _ceiling(self, addr: Addr) -> int:
        return ceiling_for(route_mtu(addr))

    # --- the crypto actor ------------------------------------------------------------------------

    # Both queue batches for the crypto actor. A batch its full queue refuses is held, and the
    # forwarder stops reading the UDP socket and capture's queue until the crypto actor takes
    # it (or CRYPTO_GIVE_UP passes: the actor is gone, the held batches are dropped).

    def _to_open(self, sender: int, blobs: list) -> None:
        """Sealed blobs from ``sender``: opened, they come back to _on_crypto."""
        peer = self.peers[sender]
        for chunk in batches(blobs):
            self._to_crypto(encode_request(OPEN, peer, chunk, sender), len(chunk))

    def _to_seal(self, path: Path, bodies: list) -> None:
        """FRAMES bodies for ``path``'s neighbour: the crypto actor seals them and sends them
        from our port itself; nothing comes back."""
        name, addr, piece, me = path.name, path.addr, path.piece_size, self.me_wire
        for chunk in batches(bodies):
            self._to_crypto(encode_send(name, addr, piece, me, chunk), len(chunk))

    def _to_crypto(self, parts: list, count: int) -> None:
        backlog = self.crypto_backlog
        held = len(backlog)
        backlog.send(parts, count)
        if not held and backlog:  # the first refusal: pause our inputs
            self.remove_reader(self.udp.fileno())
            self.remove_reader(self.frames_out)
            self.add_writer(self.crypto, self._on_crypto_room)
            self.crypto_paused += 1
            pause = self.crypto_paused
            self.after(CRYPTO_GIVE_UP, lambda: self._crypto_gone(pause))

    def _on_crypto_room(self) -> None:
        if self.crypto_backlog.flush():
            self._crypto_resume()

    def _crypto_gone(self, pause: int) -> None:
        if pause == self.crypto_paused and self.crypto_backlog:
            self.crypto_backlog.drop()
            self._crypto_resume()

    def _crypto_resume(self) -> None:
        self.crypto_paused += 1
        self.remove_writer(self.crypto)
        self.add_reader(self.udp.fileno(), self._on_udp)
        self.add_reader(self.frames_out, self._on_captured)

    def _on_crypto(self) -> None:
        plan = Plan()
        now = time.monotonic()
        counters = self.counters
        nframes = 0
        for parts in drain(self.crypto, CRYPTO_REPLIES_PER_WAKEUP):
            try:
                reply, results = decode_reply(parts)
            except CryptoProtoError:
                counters.drop(BAD_CRYPTO_REPLY)
                continue
            if reply.op != OPEN:
                counters.drop(BAD_CRYPTO_REPLY)  # sealed datagrams are crypto's to send
                continue
            if reply.failed:
                counters.drop(CRYPTO_FAILED, reply.failed)
            if reply.tag not in self.peers:
                counters.drop(UNKNOWN_SENDER, len(results) - reply.failed)
            else:
                nframes += self.inbound.opened(results, reply.tag, now, plan)
        if nframes:
            counters.add("rx", nframes)
        if plan.inject or plan.send or plan.drops:
            self._execute(plan, now)

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
        if plan.to_kernel:
            self._to_kernel(plan.to_kernel, now)
        if plan.learned and self.launch.debug:
            for mac, peer, how in plan.learned:
                name = sleeve.peer_from_wire(peer) if peer else self.me
                self.log.debug("mac_learned", mac=mac.hex(":"), peer=name, how=how.name.lower())

    def _to_kernel(self, pairs: list, now: float) -> None:
        """Ask netconf to move MACs at fastdp peers to the VXLAN port (FastdpMacs), each at
        most once per MOVE_RETRY seconds: until it is done their frames keep coming here."""
        asked = self.moves_asked
        macs = []
        for mac, peer in pairs:
            ip = self.fastdp_ips.get(peer)
            if ip is None or now - asked.get(mac, -MOVE_RETRY) < MOVE_RETRY:
                continue
            asked[mac] = now
            macs.append((mac.hex(":"), ip))
        if len(asked) > 4096:
            asked.clear()
        if macs:
            self.netconf.send(FastdpMacs(tuple(macs[:256])), None)

    def _send_frames(self, path: Path, src: int, dst: int, frames: list, inject: list) -> None:
        # sealed: one contiguous body per datagram, for the crypto actor; clear: gathered
        out = pack_for_path(frames, path.max_datagram - self.seal_extra, sender=self.me_wire,
                            src_peer=src, dst_peer=dst, seq=path.seq, gather=not self.encrypt)
        datagrams = out.datagrams
        path.seq += len(datagrams)
        if out.fitted:
            self.counters.add("fitted", out.fitted)
        if out.drops:
            self.counters.add_drops(out.drops)
        inject.extend(out.inject)
        self.counters.add("tx", out.sent)
        path.tx_frames += out.sent
        if self.encrypt:
            self._to_seal(path, [memoryview(d)[OUTER_LEN:] for d in datagrams])
            return
        self.udp.send_datagrams(datagrams, path.addr, path.piece_size)

    # --- our TAP: frames for our bridge -------------------------------------------------------

    def _open_tap(self) -> None:
        """Open our detached queue of the TAP if it is not open; never waits (the UDP side
        keeps running), but exits after TAP_GIVE_UP seconds without it."""
        if self.tap is not None:
            return
        try:
            self.tap = tap.open_existing(ROUTER_PORT, detached=True)
        except OSError as exc:
            if time.monotonic() - self.tap_missing_since >= TAP_GIVE_UP:
                self.log.error("tap_unavailable", reason=str(exc))
                raise SystemExit(1) from None
            return
        self.log.info("tap_opened", tap=self.tap.ifname, offloads=self.tap.offloads)

    def _close_tap(self, reason: str) -> None:
        if self.tap is not None:
            os.close(self.tap.fd)
            self.tap = None
            self.tap_missing_since = time.monotonic()
            self.log.warning("tap_lost", reason=reason)

    def _inject(self, frames: list) -> None:
        """Write frames (virtio-net header + Ethernet) to our bridge through the TAP."""
        handle = self.tap
        counters = self.counters
        if handle is None:
            counters.drop(TAP_UNAVAILABLE, len(frames))
            return
        fd, write = handle.fd, tap.write_frame
        written = nbytes = refused = 0
        try:
            for frame in frames:
                if write(fd, frame):
                    written += 1
                    nbytes += len(frame)
                else:
                    refused += 1
        except OSError as exc:  # not about one frame: the TAP went away under us (EBADFD)
            counters.drop(TAP_UNAVAILABLE, len(frames) - written - refused)
            self._close_tap(str(exc))
        if refused:
            counters.drop(TAP_WRITE_REFUSED, refused)
        if written:
            counters.add("injected", written)
            counters.add("injected_bytes", nbytes)

    # --- timers ------------------------------------------------------------------------------

    def _heartbeats(self) -> None:
        self._send_heartbeats(self.paths.values())
        self._publish_paths(time.monotonic())

    def _send_heartbeats(self, paths: Iterable[Path]) -> None:
        for path in paths:
            key = path.send_key
            if path.addr is not None and key is not None:
                self.udp.send_control(sleeve.HEARTBEAT, path.addr, self.token, key)

    def _poll_pmtu(self) -> None:
        now = time.monotonic()
        for path in self.paths.values():
            key = path.send_key
            if key is None:  # no connection keys yet: the neighbour would drop the probes
                continue
            for probe in path.due_probes(now):
                try:
                    self.udp.send_control(probe.kind, path.addr, probe.token, key, value=probe.size,
                                          size=probe.size, df=probe.kind == sleeve.PMTU_PROBE)
                except OSError:  # EMSGSIZE: bigger than our own link
                    path.too_big(probe.size, now)
        self._publish_paths(now)

    def _publish_paths(self, now: float) -> None:
        view = describe_paths(self.paths.values(), now)
        if view != self.published_paths:
            self.published_paths = view
            self.publish("paths", {"paths": view})
            self.log.info("paths_changed", paths=view)

    def _gossip_ready(self) -> None:
        """A (re)started gossip: tell it the paths, ask it for the routes."""
        self.published_paths = None
        self._publish_paths(time.monotonic())
        self.gossip.send(RoutesQuery(), None)

    def _stats(self) -> None:
        snap = self.counters.snapshot()
        self.log.info("stats", rx=snap.get("rx", 0), tx=snap.get("tx", 0),
                      dropped=snap["dropped"], drops=snap["drops"], macs=len(self.macs))

    def status(self) -> dict[str, Any]:
        paths = describe_paths(self.paths.values(), time.monotonic(), with_addr=True)
        return {"macs": len(self.macs), "counters": self.counters.snapshot(), "paths": paths,
                "tap": self.tap.ifname if self.tap is not None else None}

    def teardown(self) -> None:
        self.udp.close()
        self._close_tap("stopping")


if __name__ == "__main__":
    sys.exit(main(ForwarderActor))
