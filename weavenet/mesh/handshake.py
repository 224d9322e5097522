"""The handshake on a new peer connection, as a sans-IO state machine.

Both sides run the same steps at once: send the protocol header; on the remote header pick the
highest common version (or refuse) and send ``Hello``; on the remote ``Hello`` check it is not
ourselves, not a peer using our name, and that both agree on encryption. Both sides see both
hellos, so each reaches the same verdict on its own; the ``Goodbye`` sent on refusal is a courtesy
for the remote's log.

With a password (``exchange`` given) the hellos carry ephemeral public keys, and a password proof
follows, in the order ``weavenet.crypto.keys`` prescribes: the initiator (outbound side) sends its
``Proof`` at once; the responder checks it and only then sends its own, and is accepted; the
initiator is accepted when the responder's proof checks. A wrong proof is refused with
``PASSWORD_MISMATCH``, which the side that detects it also tells the other in its ``Goodbye``.
``Accepted.keys`` then holds the connection's ``SessionKeys``: everything after the proofs is
sealed (``PeerConnection.accept`` in ``weavenet.mesh.connection`` switches the decoder with
``Decoder.open_with``).

The gossip actor drives it, through the connection, with what ``wire.Decoder`` yields::

    hs = Handshake(config, outbound=True, conn_id=rng.getrandbits(64))
    sock.send(hs.start())
    for item in decoder.feed(data):
        step = hs.receive(item)        # before the outcome; later items go to gossip
        sock.send(step.send)
        if step.outcome: ...           # Accepted or Refused (then close)

Duplicate connections between the same two peers are settled by ``prefer`` below
(``PeerConnection.loses_to`` applies it).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from weavenet.crypto.keys import (
    HandshakeError,
    HandshakeParty,
    KeyExchange,
    PasswordMismatch,
    Role,
    SessionKeys,
)
from weavenet.mesh.peer import Peer
from weavenet.mesh.wire import (
    PROTOCOL_MAX_VERSION,
    PROTOCOL_MIN_VERSION,
    Goodbye,
    Hello,
    Message,
    Proof,
    ProtocolHeader,
    encode,
    encode_header,
)
from weavenet.runtime.defaults import PORT

# Refusal reasons (also sent to the remote in Goodbye).
CONNECTION_TO_SELF = "connection to self"
NAME_COLLISION = "peer name collision"
REMOTE_REQUIRES_ENCRYPTION = "remote peer requires encryption"
LOCAL_REQUIRES_ENCRYPTION = "remote peer does not use encryption"
PASSWORD_MISMATCH = "password mismatch"
NO_COMMON_VERSION = "no common protocol version"
DUPLICATE_CONNECTION = "duplicate connection"

# Retrying cannot fix these until someone changes a configuration.
PERMANENT_REASONS = frozenset(
    {
        CONNECTION_TO_SELF,
        NAME_COLLISION,
        REMOTE_REQUIRES_ENCRYPTION,
        LOCAL_REQUIRES_ENCRYPTION,
        PASSWORD_MISMATCH,
        NO_COMMON_VERSION,
    }
)


def negotiate_version(
    local_min: int, local_max: int, remote_min: int, remote_max: int
) -> int | None:
    """The highest version both ranges contain, or None."""
    best = min(local_max, remote_max)
    return best if best >= max(local_min, remote_min) else None


@dataclass(frozen=True)
class HandshakeConfig:
    """What this router says about itself on every connection."""

    peer: Peer
    udp_port: int = PORT
    encrypt: bool = False
    public_key: bytes | None = None  # this connection's ephemeral key when encrypting
    fastdp: bool = False  # offer the fast datapath (weavenet.mesh.overlay)
    min_version: int = PROTOCOL_MIN_VERSION
    max_version: int = PROTOCOL_MAX_VERSION


@dataclass(frozen=True)
class Accepted:
    remote: Peer
    version: int
    connection_id: int  # the same number on both ends
    outbound: bool
    remote_udp_port: int
    remote_public_key: bytes | None
    keys: SessionKeys | None = None  # with a password: this connection's keys, proofs checked
    remote_fastdp: bool = False  # the remote's Hello offered the fast datapath


@dataclass(frozen=True)
class Refused:
    reason: str
    permanent: bool  # do not redial this address in a loop
    by_remote: bool  # the remote said goodbye, rather than our own checks failing


@dataclass(frozen=True)
class Step:
    send: bytes = b""
    outcome: Accepted | Refused | None = None


class State(enum.Enum):
    AWAIT_HEADER = "await_header"
    AWAIT_HELLO = "await_hello"
    AWAIT_PROOF = "await_proof"
    ACCEPTED = "accepted"
    REFUSED = "refused"


class Handshake:
    def __init__(
        self,
        config: HandshakeConfig,
        *,
        outbound: bool,
        conn_id: int,
        exchange: KeyExchange | None = None,
    ) -> None:
        if exchange is not None and (
                not config.encrypt or config.public_key != exchange.public_key):
            raise ValueError("the config must encrypt with the exchange's public key")
        if config.encrypt and config.public_key is None:
            raise ValueError("an encrypting handshake needs an ephemeral public key")
        self.config = config
        self.outbound = outbound
        self.conn_id = conn_id
        self.exchange = exchange
        self.state = State.AWAIT_HEADER
        self.version: int | None = None
        self.remote: Peer | None = None  # who the remote says it is, once its hello is in
        self._started = False
        self._pending: Accepted | None = None  # accepted once the proofs check

    def start(self) -> bytes:
        """The bytes to write as soon as the TCP connection is up."""
        self._started = True
        return encode_header(self.config.min_version, self.config.max_version)

    @property
    def done(self) -> bool:
        return self.state in (State.ACCEPTED, State.REFUSED)

    def receive(self, item: ProtocolHeader | Message) -> Step:
        if not self._started:
            raise RuntimeError("Handshake.start() must be sent first")
        if self.done:
            raise RuntimeError(f"handshake already {self.state.value}")
        if isinstance(item, Goodbye):
            self.state = State.REFUSED
            reason = item.reason or "remote closed the connection"
            return Step(outcome=Refused(reason, reason in PERMANENT_REASONS, by_remote=True))
        if self.state is State.AWAIT_HEADER:
            if not isinstance(item, ProtocolHeader):
                return self._refuse(f"expected protocol header, got {type(item).__name__}")
            return self._on_header(item)
        if self.state is State.AWAIT_PROOF:
            if not isinstance(item, Proof):
                return self._refuse(f"expected password proof, got {type(item).__name__}")
            return self._on_proof(item)
        if not isinstance(item, Hello):
            return self._refuse(f"expected hello, got {type(item).__name__}")
        return self._on_hello(item)

    def _on_header(self, header: ProtocolHeader) -> Step:
        cfg = self.config
        version = negotiate_version(
            cfg.min_version, cfg.max_version, header.min_version, header.max_version
        )
        if version is None:
            return self._refuse(
                f"{NO_COMMON_VERSION} (local {cfg.min_version}..{cfg.max_version}, "
                f"remote {header.min_version}..{header.max_version})",
                permanent=True,
            )
        self.version = version
        self.state = State.AWAIT_HELLO
        hello = Hello(
            name=cfg.peer.name,
            nickname=cfg.peer.nickname,
            uid=cfg.peer.uid,
            conn_id=self.conn_id,
            encrypt=cfg.encrypt,
            public_key=cfg.public_key if cfg.encrypt else None,
            udp_port=cfg.udp_port,
            fastdp=cfg.fastdp,
        )
        return Step(send=encode(hello))

    def _on_hello(self, hello: Hello) -> Step:
        me = self.config.peer
        self.remote = Peer(hello.name, hello.nickname, hello.uid)
        if hello.name == me.name:
            # Same name and UID is this very process (we dialled one of our own addresses).
            return self._refuse(CONNECTION_TO_SELF if hello.uid == me.uid else NAME_COLLISION)
        if hello.encrypt and not self.config.encrypt:
            return self._refuse(REMOTE_REQUIRES_ENCRYPTION)
        if self.config.encrypt and not hello.encrypt:
            return self._refuse(LOCAL_REQUIRES_ENCRYPTION)
        assert self.version is not None
        accepted = Accepted(
            remote=Peer(hello.name, hello.nickname, hello.uid),
            version=self.version,
            connection_id=self.conn_id ^ hello.conn_id,
            outbound=self.outbound,
            remote_udp_port=hello.udp_port,
            remote_public_key=hello.public_key,
            remote_fastdp=hello.fastdp,
        )
        if self.exchange is None:
            self.state = State.ACCEPTED
            return Step(outcome=accepted)
        assert self.config.public_key is not None and hello.public_key is not None
        role = Role.INITIATOR if self.outbound else Role.RESPONDER
        local = HandshakeParty(me.name, me.uid, self.conn_id, self.config.public_key)
        remote = HandshakeParty(hello.name, hello.uid, hello.conn_id, hello.public_key)
        try:
            keys = self.exchange.complete(role, local, remote)
        except HandshakeError as exc:
            return self._refuse(f"key exchange failed: {exc}")
        self._pending = dataclasses.replace(accepted, keys=keys)
        self.state = State.AWAIT_PROOF
        # the initiator proves first; the responder proves only after checking it (keys.py)
        return Step(send=encode(Proof(keys.local_proof)) if self.outbound else b"")

    def _on_proof(self, proof: Proof) -> Step:
        accepted = self._pending
        assert accepted is not None and accepted.keys is not None
        try:
            accepted.keys.verify_remote_proof(proof.proof)
        except PasswordMismatch:
            self._pending = None
            return self._refuse(PASSWORD_MISMATCH)
        self.state = State.ACCEPTED
        self._pending = None
        reply = b"" if self.outbound else encode(Proof(accepted.keys.local_proof))
        return Step(send=reply, outcome=accepted)

    def _refuse(self, reason: str, permanent: bool | None = None) -> Step:
        self.state = State.REFUSED
        perm = reason in PERMANENT_REASONS if permanent is None else permanent
        return Step(send=encode(Goodbye(reason)), outcome=Refused(reason, perm, by_remote=False))


@dataclass(frozen=True)
class ConnectionSide:
    """What each end knows about one of several connections to the same remote peer."""

    outbound: bool
    connection_id: int


def prefer(local: Peer | str, remote: Peer | str, a: ConnectionSide, b: ConnectionSide) -> int:
    """Which of two connections between the same two peers to keep: 0 for ``a``, 1 for ``b``.

    The connection initiated by the peer with the lower name wins; between two initiated by the
    same peer, the lower connection id. Each end sees the other's outbound as inbound, so both
    ends keep the same connection and close the other without talking about it.
    """
    lname = local.name if isinstance(local, Peer) else local
    rname = remote.name if isinstance(remote, Peer) else remote
    if lname == rname:
        raise ValueError("duplicate resolution needs two different peers")
    local_is_lower = lname < rname

    def rank(side: ConnectionSide) -> tuple[int, int]:
        by_lower = side.outbound == local_is_lower
        return (0 if by_lower else 1, side.connection_id)

    return 0 if rank(a) <= rank(b) else 1
