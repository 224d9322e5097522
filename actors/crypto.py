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
"malformed", "exhausted", "bad_request", "reply_dropped"}}. Per-datagram logs only with --debug.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import zmq

from weavenet.crypto.keyring import KeyReused, KeyRing
from weavenet.crypto.protocol import (
    SEAL,
    CryptoProtoError,
    ForgetKeys,
    Install,
    decode_request,
    encode_reply_header,
)
from weavenet.dataplane.batch import tune_malloc
from weavenet.runtime import bus
from weavenet.runtime.actor import Actor, drain, handles, main
from weavenet.runtime.bus import BusError

QUEUE_HWM = 16  # batches each way: by latency, as weavenet.dataplane.queues.QUEUE_HWM
REQUESTS_PER_WAKEUP = 256  # bounded drain, so heartbeats and key installs are never starved
STATS_INTERVAL = 30.0


class Crypto(Actor):
    NAME = "crypto"

    def setup(self) -> None:
        tune_malloc()
        self.ring = KeyRing()
        self.debug = self.launch.debug
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
