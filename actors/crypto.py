"""The crypto actor: seals and sends sleeve datagrams, and opens received ones, with
per-connection session keys.

Sockets
    ROUTER bound at ``Endpoints.crypto``; the forwarder connects a DEALER. One multipart message
    per batch (codec and field meanings in ``weavenet.crypto.protocol``)::

        send     [header, p1, ..., pn]   header {"op": "send", "peer", "addr", "piece", "sender"}
        request  [header, p1, ..., pn]   header {"op": "seal"|"open", "peer": name, "tag": any}
        reply    [header, r1, ..., rn]   header {"op", "peer", "tag", "epoch", "failed"}

    ``send`` is one way, the sending side's pipeline stage: each FRAMES body is sealed with the
    peer's current send key and sent at once on the router's UDP socket (below) to ``addr``,
    behind the clear prefix of ``sender`` (``weavenet.dataplane.sealed``), as FRAGMENT pieces
    of ``piece`` bytes (one GSO send) where it is bigger. Nothing is answered: the forwarder
    never sees sealed datagrams, so this actor counts what it could not seal or send.
    ``open`` is a round trip, because the forwarder must see the opened frames to deliver or
    relay them; ``seal`` is the same round trip for sealing (tests and tools). Both reply with
    the same number of parts, in the same order. Sealing turns each payload into ``seq u64 ||
    MAC || ciphertext`` (24 bytes longer); opening checks and opens such datagrams with the
    receive key and replay window. A failed item (no keys for the peer, forged, replayed,
    malformed, empty or oversized) comes back as an EMPTY part, ``failed`` counts them,
    ``epoch`` names the keys used (None when the peer has none) and ``tag`` is echoed so the
    forwarder can match replies without waiting for them. A request whose header is malformed
    is dropped and counted (``bad_request``): there is no tag to answer to.
    UDP: the router's socket on port 6783, inherited from the supervisor
    (``weavenet.dataplane.udp_socket``: why one socket shared with the forwarder, and why this
    actor only sends on it). Sealed datagrams thus leave from 6783, as the forwarder's clear
    ones do, and a NAT keeps one mapping. Started without it (tests), ``send`` counts its
    datagrams as dropped (``no_socket``).

Bus requests (from gossip, through the supervisor; specified in ``weavenet.crypto.protocol``)
    ``Install`` (``crypto.install``): the peer's keys for one connection; replaces its sealer and
        opener. A sealer is never carried over, so a new connection's datagrams start at
        sequence 0 under a new key; a key already used in its role is refused.
    ``ForgetKeys`` (``crypto.forget``): drop the peer's keys (its connection is gone).

The keys themselves live in a ``weavenet.crypto.keyring.KeyRing``; this module is its I/O.
Keys live only in this process's memory and are never logged; a restarted crypto actor starts
empty, and when the supervisor announces ``actor.ready`` for "crypto" gossip moves every
encrypted connection to fresh keys (a re-key, ``weavenet.crypto.keys.rekeyed_udp_keys``) and
installs them: the connections stay up.
Status: {"peers": n, "counters": {"sealed", "opened", "no_keys", "forged", "replayed",
"malformed", "exhausted", "bad_request", "reply_dropped" (per item sealed or opened, or failing
for that reason), "tx_datagrams", "tx_bytes" (sent on the sleeve), "dropped", "drops" (datagrams
of ``send`` not sent, by reason: "no_keys", "malformed", "exhausted" when sealing failed,
"send_failed" when the kernel refused, "no_socket")}}. Per-datagram logs only with --debug.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import zmq

from weavenet.crypto.keyring import KeyReused, KeyRing
from weavenet.crypto.protocol import (
    SEAL,
    SEND,
    CryptoProtoError,
    ForgetKeys,
    Install,
    decode_request,
    encode_reply_header,
)
from weavenet.dataplane.batch import tune_malloc
from weavenet.dataplane.sealed import sealed_prefix
from weavenet.dataplane.udp_port import inherited_udp
from weavenet.dataplane.udp_socket import UdpSocket
from weavenet.runtime import bus
from weavenet.runtime.actor import Actor, drain, handles, main
from weavenet.runtime.bus import BusError
from weavenet.runtime.counters import Counters

QUEUE_HWM = 16  # batches each way: by latency, as weavenet.dataplane.queues.QUEUE_HWM
REQUESTS_PER_WAKEUP = 256  # bounded drain, so heartbeats and key installs are never starved
STATS_INTERVAL = 30.0
SEAL_FAILURES = ("no_keys", "malformed", "exhausted")  # the key ring's reasons, when sealing
NO_SOCKET = "no_socket"  # drop reason: started without the router's UDP socket


class Crypto(Actor):
    NAME = "crypto"

    def setup(self) -> None:
        tune_malloc()
        self.ring = KeyRing()
        self.debug = self.launch.debug
        self._logged_counters: dict[str, Any] = {}
        self.data = self.ctx.socket(zmq.ROUTER)
        self.data.setsockopt(zmq.SNDHWM, QUEUE_HWM)
        self.data.setsockopt(zmq.RCVHWM, QUEUE_HWM)
        self.data.setsockopt(zmq.LINGER, 0)
        # without it a ROUTER silently drops replies it cannot deliver; we want them counted
        self.data.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.data.bind(self.endpoints.crypto)
        self.net = Counters()  # what `send` sent and dropped
        self.prefixes: dict[int, bytes] = {}
        sock = inherited_udp(self.launch.port)
        # frag ids: random, so a restarted crypto actor does not reuse its predecessor's soon
        self.udp = None if sock is None else UdpSocket(
            self.launch.port, sender=0, frag_id=int.from_bytes(os.urandom(8), "big"),
            counters=self.net, log=self.log, sock=sock)
        self.add_reader(self.data, self._on_data)
        self.every(STATS_INTERVAL, self._log_stats)

    # -- bus ------------------------------------------------------------------------------------
    @handles(Install)
    def on_install(self, install: Install) -> dict[str, Any]:
        replaced = install.peer in self.ring.peers
        try:
            installed = self.ring.install(install)
        except KeyReused as exc:
            raise BusError(bus.USAGE, str(exc)) from None
        if installed:
            self.log.info("keys_installed", peer=install.peer, epoch=install.epoch,
                          replaced=replaced)
        return {}

    @handles(ForgetKeys)
    def on_forget(self, forget: ForgetKeys) -> dict[str, Any]:
        if self.ring.forget(forget.peer):
            self.log.info("keys_forgotten", peer=forget.peer)
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
            if req.op == SEND:
                self._seal_and_send(req, payloads)
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

    def _seal_and_send(self, req: Any, payloads: Any) -> None:
        ring, net = self.ring, self.net
        counters = ring.counters
        before = [counters[r] for r in SEAL_FAILURES]
        _, results, failed = ring.seal(req.peer, payloads)
        if failed:
            for reason, was in zip(SEAL_FAILURES, before, strict=True):
                if counters[reason] != was:
                    net.drop(reason, counters[reason] - was)
            if self.debug:
                self.log.debug("seal_failed", peer=req.peer, failed=failed)
        udp = self.udp
        if udp is None:
            net.drop(NO_SOCKET, len(results) - failed)
            return
        prefix = self.prefixes.get(req.sender)
        if prefix is None:
            prefix = self.prefixes[req.sender] = sealed_prefix(req.sender)
        udp.sender = req.sender  # in the FRAGMENT pieces' headers
        udp.send_sealed(prefix, results, req.addr, req.piece)

    def _counters(self) -> dict[str, Any]:
        return {**self.ring.counters, **self.net.snapshot()}

    def _log_stats(self) -> None:
        counters = self._counters()
        if counters != self._logged_counters:
            self._logged_counters = counters
            self.log.info("stats", peers=len(self.ring.peers), **counters)

    def status(self) -> dict[str, Any]:
        return {"peers": len(self.ring.peers), "counters": self._counters()}

    def teardown(self) -> None:
        if self.udp is not None:
            self.udp.close()  # ours only: the supervisor keeps the socket


if __name__ == "__main__":
    sys.exit(main(Crypto))
