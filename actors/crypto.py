"""The crypto actor: seals and opens sleeve datagrams with per-connection session keys.

Sockets
    ROUTER bound at ``Endpoints.crypto``; the forwarder connects a DEALER. One multipart message
    per batch (codec and field meanings in ``weavenet.crypto.protocol``)::

        request  [header, p1, ..., pn]   header {"op": "seal"|"open", "peer": name, "tag": any}
        reply    [header, r1, ..., rn]   header {"op", "peer", "tag", "epoch", "failed"}

    Same number of parts, same order. ``seal`` turns each payload into ``seq u64 || MAC ||
    ciphertext`` (24 bytes longer) with the peer's current send key; ``open`` checks and opens
    such datagrams with its receive key and replay window. A failed item (no keys for the peer,
    forged, replayed, malformed, empty or oversized) comes back as an EMPTY part, ``failed``
    counts them, ``epoch`` names the keys used (None when the peer has none) and ``tag`` is
    echoed so the forwarder can match replies without waiting for them. A request whose header
    is malformed is dropped and counted (``bad_request``): there is no tag to answer to.

Bus requests (from gossip, through the supervisor)
    ``crypto.install`` {"peer", "epoch", "udp_send": 32 bytes, "udp_recv": 32 bytes} -> {}:
        the peer's keys for connection ``epoch``; replaces its sealer and opener. A sealer is never
        carried over, so a new connection's datagrams start at sequence 0 under a new key. The
        identical install again (a retry) is a no-op; any other install of a send (receive) key
        already seen as a send (receive) key, in use for any peer or retired, is refused with a
        "usage" error: a new sealer under an old key would reuse nonces, a new opener would
        forget which datagrams it has already accepted.
        Epochs are opaque connection ids (random in gossip), compared for equality only.
    ``crypto.forget`` {"peer"} -> {}: drop the peer's keys (its connection is gone).

Until ``PREVIOUS_GRACE`` seconds after a re-install the previous receive key still opens what
the other side sealed before it installed the new keys too, so a re-key costs no datagrams.

Keys live only in this process's memory and are never logged; a restarted crypto actor starts
empty and gossip renegotiates when the supervisor announces ``actor.ready`` for "crypto".
Status: {"peers": n, "counters": {"sealed", "opened", "no_keys", "forged", "replayed",
"malformed", "exhausted", "bad_request", "reply_dropped"}}. Per-datagram logs only with --debug.
"""

from __future__ import annotations

import errno
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from weavenet.crypto.protocol import (
    MAX_PAYLOAD,
    SEAL,
    CryptoProtoError,
    Install,
    decode_forget,
    decode_install,
    decode_request,
    encode_reply_header,
)
from weavenet.crypto.seal import (
    DatagramOpener,
    DatagramSealer,
    ForgedMessage,
    MalformedMessage,
    NonceExhausted,
    ReplayedDatagram,
)
from weavenet.dataplane.batch import tune_malloc
from weavenet.runtime import bus
from weavenet.runtime.actor import Actor, drain, handles, main
from weavenet.runtime.bus import BusError, Envelope

QUEUE_HWM = 1024  # batches each way
REQUESTS_PER_WAKEUP = 256  # bounded drain, so heartbeats and key installs are never starved
PREVIOUS_GRACE = 3.0  # seconds the previous receive key still opens in-flight datagrams
RETIRED_KEYS = 65536  # fingerprints of retired keys remembered, to refuse their reuse
STATS_INTERVAL = 30.0

COUNTERS = ("sealed", "opened", "no_keys", "forged", "replayed", "malformed", "exhausted",
            "bad_request", "reply_dropped")
_EMPTY = b""


def key_fingerprint(key: bytes) -> bytes:
    # A one-way digest: enough to recognise a key again, useless to recover it
    return blake2b(key, digest_size=16, person=b"weavenet-keyfp", encoder=RawEncoder)


class KeyReused(ValueError):
    """An install whose send or receive key was already used in that role."""


class PeerKeys:
    """One peer's keys: the sealer and opener of its current connection, and the previous opener
    during the grace period after a re-key."""

    __slots__ = ("epoch", "sealer", "opener", "previous", "previous_until", "send_fingerprint",
                 "recv_fingerprint")

    def __init__(self, install: Install) -> None:
        self.epoch = install.epoch
        self.sealer = DatagramSealer(install.udp_send)
        self.opener = DatagramOpener(install.udp_recv)
        self.previous: DatagramOpener | None = None
        self.previous_until = 0.0
        self.send_fingerprint = key_fingerprint(install.udp_send)
        self.recv_fingerprint = key_fingerprint(install.udp_recv)


class KeyRing:
    """Sans-IO core: session keys per peer and the batch seal/open with failure counting."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.peers: dict[str, PeerKeys] = {}
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._retired_send: OrderedDict[bytes, None] = OrderedDict()
        self._retired_recv: OrderedDict[bytes, None] = OrderedDict()

    # -- keys -----------------------------------------------------------------------------------
    def install(self, install: Install) -> bool:
        """Install a connection's keys; False if exactly these keys are already installed."""
        send_fp = key_fingerprint(install.udp_send)
        recv_fp = key_fingerprint(install.udp_recv)
        current = self.peers.get(install.peer)
        if current is not None and (current.epoch, current.send_fingerprint,
                                    current.recv_fingerprint) == (install.epoch, send_fp, recv_fp):
            return False  # a retried request: keep the counter and the replay window as they are
        # A key seen before in the same role is refused: a new sealer would restart its nonces at
        # 0, a new opener its replay window, letting captured datagrams through again.
        peers = self.peers.values()
        if (send_fp in self._retired_send or any(k.send_fingerprint == send_fp for k in peers)
                or recv_fp in self._retired_recv
                or any(k.recv_fingerprint == recv_fp for k in peers)):
            raise KeyReused("session key already used; refusing to reuse it")
        keys = PeerKeys(install)
        if current is not None:
            self._retire(current)
            keys.previous = current.opener
            keys.previous_until = self.clock() + PREVIOUS_GRACE
        self.peers[install.peer] = keys
        return True

    def forget(self, peer: str) -> bool:
        keys = self.peers.pop(peer, None)
        if keys is None:
            return False
        self._retire(keys)
        return True

    def _retire(self, keys: PeerKeys) -> None:
        for retired, fp in ((self._retired_send, keys.send_fingerprint),
                            (self._retired_recv, keys.recv_fingerprint)):
            retired[fp] = None
            while len(retired) > RETIRED_KEYS:
                retired.popitem(last=False)

    # -- data -----------------------------------------------------------------------------------
    def seal(self, peer: str, payloads: Sequence[bytes]) -> tuple[int | None, list[bytes], int]:
        """Seal every payload for `peer`: (epoch, results with b"" for failures, failures)."""
        keys = self.peers.get(peer)
        counters = self.counters
        if keys is None:
            counters["no_keys"] += len(payloads)
            return None, [_EMPTY] * len(payloads), len(payloads)
        seal = keys.sealer.seal
        out: list[bytes] = []
        append = out.append
        failed = 0
        for p in payloads:
            # empty replies mean failure, so an empty payload is never sealed
            if not 0 < len(p) <= MAX_PAYLOAD:
                counters["malformed"] += 1
                failed += 1
                append(_EMPTY)
                continue
            try:
                append(seal(p))
            except NonceExhausted:
                counters["exhausted"] += 1
                failed += 1
                append(_EMPTY)
        counters["sealed"] += len(out) - failed
        return keys.epoch, out, failed

    def open(self, peer: str, datagrams: Sequence[bytes]
             ) -> tuple[int | None, list[bytes], int, list[str]]:
        """Open every datagram from `peer`: (epoch, results, failures, failure reasons)."""
        keys = self.peers.get(peer)
        counters = self.counters
        if keys is None:
            counters["no_keys"] += len(datagrams)
            return None, [_EMPTY] * len(datagrams), len(datagrams), ["no_keys"] * len(datagrams)
        previous = keys.previous
        if previous is not None and self.clock() >= keys.previous_until:
            previous = keys.previous = None  # grace over: the old connection's key dies
        open_ = keys.opener.open
        out: list[bytes] = []
        append = out.append
        reasons: list[str] = []
        for d in datagrams:
            reason = None
            if len(d) > MAX_PAYLOAD:
                reason = "malformed"
            else:
                try:
                    payload = open_(d)
                except MalformedMessage:
                    reason = "malformed"
                except ReplayedDatagram:
                    reason = "replayed"
                except ForgedMessage:
                    reason = "forged"
                else:
                    # a genuine empty payload would read as a failure; nobody seals one
                    reason = None if payload else "malformed"
                if reason in ("forged", "replayed") and previous is not None:
                    try:
                        payload = previous.open(d)
                        reason = None if payload else "malformed"
                    except (MalformedMessage, ReplayedDatagram, ForgedMessage):
                        pass  # counted under the current key's verdict
            if reason is None:
                append(payload)
            else:
                counters[reason] += 1
                reasons.append(reason)
                append(_EMPTY)
        counters["opened"] += len(out) - len(reasons)
        return keys.epoch, out, len(reasons), reasons


class Crypto(Actor):
    NAME = "crypto"

    def setup(self) -> None:
        tune_malloc()
        self.ring = KeyRing()
        self.debug = bool(self.config.get("debug"))
        self._logged_counters: dict[str, int] = {}
        self.data = self.ctx.socket(zmq.ROUTER)
        self.data.setsockopt(zmq.SNDHWM, QUEUE_HWM)
        self.data.setsockopt(zmq.RCVHWM, QUEUE_HWM)
        self.data.setsockopt(zmq.LINGER, 0)
        # without it a ROUTER silently drops replies it cannot deliver; we want them counted
        self.data.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.data.bind(self.endpoints.crypto)
        self.add_reader(self.data, self._on_data)
        self.every(STATS_INTERVAL, self._log_stats)

    # -- bus ------------------------------------------------------------------------------------
    @handles("crypto.install")
    def on_install(self, env: Envelope) -> dict[str, Any]:
        try:
            install = decode_install(env.body)
        except CryptoProtoError as exc:
            raise BusError(bus.USAGE, str(exc)) from None
        replaced = install.peer in self.ring.peers
        try:
            installed = self.ring.install(install)
        except KeyReused as exc:
            raise BusError(bus.USAGE, str(exc)) from None
        if installed:
            self.log.info("keys_installed", peer=install.peer, epoch=install.epoch,
                          replaced=replaced)
        return {}

    @handles("crypto.forget")
    def on_forget(self, env: Envelope) -> dict[str, Any]:
        try:
            peer = decode_forget(env.body)
        except CryptoProtoError as exc:
            raise BusError(bus.USAGE, str(exc)) from None
        if self.ring.forget(peer):
            self.log.info("keys_forgotten", peer=peer)
        return {}

    # -- data -----------------------------------------------------------------------------------
    def _on_data(self) -> None:
        send = self.data.send_multipart
        ring = self.ring
        # copied parts: the libsodium binding only takes bytes, so a zero-copy receive would be
        # copied for every item anyway
        for parts in drain(self.data, REQUESTS_PER_WAKEUP, copy=True):
            ident = parts[0]
            try:
                req, payloads = decode_request(parts[1:])
            except CryptoProtoError as exc:
                ring.counters["bad_request"] += 1
                if self.debug:
                    self.log.debug("bad_request", reason=str(exc))
                continue
            if req.op == SEAL:
                epoch, results, failed = ring.seal(req.peer, payloads)
                if failed and self.debug:
                    self.log.debug("seal_failed", peer=req.peer, failed=failed)
            else:
                epoch, results, failed, reasons = ring.open(req.peer, payloads)
                if failed and self.debug:
                    self.log.debug("open_failed", peer=req.peer, reasons=reasons)
            try:
                send([ident, encode_reply_header(req, epoch, failed), *results],
                     zmq.NOBLOCK, copy=False)
            except zmq.Again:
                ring.counters["reply_dropped"] += 1
            except zmq.ZMQError as exc:
                if exc.errno != errno.EHOSTUNREACH:  # the forwarder went away meanwhile
                    raise
                ring.counters["reply_dropped"] += 1

    def _log_stats(self) -> None:
        counters = self.ring.counters
        if counters != self._logged_counters:
            self._logged_counters = dict(counters)
            self.log.info("stats", peers=len(self.ring.peers), **counters)

    def status(self) -> dict[str, Any]:
        return {"peers": len(self.ring.peers), "counters": dict(self.ring.counters)}


if __name__ == "__main__":
    sys.exit(main(Crypto))
