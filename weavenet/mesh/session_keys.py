"""Gossip's connections' UDP keys in the crypto actor: installed, forgotten, renewed.

The handshake makes a connection's keys (``weavenet.mesh.connection.PeerConnection``); the
crypto actor seals and opens its UDP frames with them. This sends them there ("crypto.install",
"crypto.forget" through the supervisor, a ``Relay``) and reads the answers: an install that
failed leaves the connection without a UDP path, so ``install_failed`` (gossip remakes the
connection if it is still the one the keys were for). A restarted crypto actor has lost every
key, its sealers' counters and its replay windows: ``rekey`` moves a connection to fresh keys (a
random salt, sent sealed in a ``Rekey`` message, folded into the keys on both ends,
``weavenet.crypto.keys.rekeyed_udp_keys``), so no nonce is reused and no replay accepted.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from weavenet.crypto.keys import REKEY_SALT_SIZE
from weavenet.crypto.protocol import ForgetKeys, Install
from weavenet.mesh.connection import PeerConnection
from weavenet.mesh.wire import Rekey, encode_body
from weavenet.runtime.bus import Envelope
from weavenet.runtime.relay import Relay

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor


class SessionKeys:
    """The UDP keys that the gossip actor ``actor`` keeps in the crypto actor."""

    def __init__(self, actor: Actor, *, log: Any,
                 install_failed: Callable[[str, int | None, str], None]) -> None:
        """``install_failed(peer, epoch, reason)``: the crypto actor refused the keys of the
        peer's connection of that epoch."""
        self.log = log
        self.install_failed = install_failed
        # keys sent to the crypto actor: (request type, peer, epoch) by request
        self.relay: Relay[tuple[str, str, int | None]] = Relay(actor, "crypto")

    def install(self, conn: PeerConnection, keys: tuple[bytes, bytes]) -> None:
        assert conn.remote is not None and conn.epoch is not None
        self._request(Install(str(conn.remote.name), conn.epoch, *keys), conn.epoch)

    def forget(self, peer: str, epoch: int) -> None:
        self._request(ForgetKeys(peer), epoch)

    def rekey(self, conn: PeerConnection) -> bytes:
        """Fresh keys for ``conn``, here and in the crypto actor: the ``Rekey`` body that gives
        them to the remote."""
        salt = os.urandom(REKEY_SALT_SIZE)
        self.install(conn, conn.rekey(salt))
        return encode_body(Rekey(salt))

    def _request(self, req: Install | ForgetKeys, epoch: int | None) -> None:
        self.relay.send(req, (req.TYPE, req.peer, epoch))

    def answer(self, env: Envelope) -> bool:
        """Whether ``env`` is the crypto actor's reply to one of these requests (and then act
        on it)."""
        answer = self.relay.answer(env)
        if answer is None:
            return False
        (type_, peer, epoch), reason = answer
        if reason is None:
            self.log.debug("crypto_request_done", type=type_, remote=peer)
            return True
        self.log.warning("crypto_request_failed", type=type_, remote=peer, reason=reason)
        if type_ == Install.TYPE:
            self.install_failed(peer, epoch, reason)
        return True
