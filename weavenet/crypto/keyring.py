"""The crypto actor's key ring: session keys per peer, batch seal and open, failure counters.

Sans-IO (the clock is injected): the actor feeds it decoded installs and batches and sends back
what it returns. A key is never reused in the role it had (a new sealer under an old send key
would reuse nonces, a new opener under an old receive key would forget its replay window), so
retired keys are remembered by a one-way fingerprint, never by value. For ``PREVIOUS_GRACE``
seconds after a re-install the previous receive key still opens what the other side sealed
before it installed the new keys too, so a re-key costs no datagrams.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from nacl.encoding import RawEncoder
from nacl.hash import blake2b

from weavenet.crypto.protocol import MAX_PAYLOAD, Install
from weavenet.crypto.seal import (
    DatagramOpener,
    DatagramSealer,
    ForgedMessage,
    MalformedBox,
    NonceExhausted,
    ReplayedDatagram,
)

PREVIOUS_GRACE = 3.0  # seconds the previous receive key still opens in-flight datagrams
RETIRED_KEYS = 65536  # fingerprints of retired keys remembered, to refuse their reuse

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
                except MalformedBox:
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
                    except (MalformedBox, ReplayedDatagram, ForgedMessage):
                        pass  # counted under the current key's verdict
            if reason is None:
                append(payload)
            else:
                counters[reason] += 1
                reasons.append(reason)
                append(_EMPTY)
        counters["opened"] += len(out) - len(reasons)
        return keys.epoch, out, len(reasons), reasons
