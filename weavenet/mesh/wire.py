"""The peer protocol on TCP 6783: a fixed header, then length-prefixed msgpack messages.

Stream layout::

    b"weavenet" | min_version:u8 | max_version:u8          (ProtocolHeader, once, each direction)
    length:u32be | msgpack map {"type": str, ...fields}      (one Message, repeated)

With a password, each side sends a ``Proof`` after the hellos (see ``weavenet.crypto.keys``)
and every message after the proofs is sealed: ``length:u32be | box`` where box is a
``StreamSealer``'s output for the msgpack body (``encode_body``). The decoder stops after the
last clear message (``pause_after``) until the accepted handshake's stream opener is handed to it
(``open_with``).

Decoding is sans-IO and incremental: ``Decoder.feed(data)`` returns what is complete and keeps the
rest. Anything malformed, oversized, truncated or unknown raises a ``WireError`` subclass; the
actor closes that connection and logs the reason. A message of a retired type (``RETIRED_TYPES``)
is skipped. Decoders ignore unknown keys (fields are only
ever added); a changed meaning gets a new type name.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import msgpack

from weavenet.crypto.keys import PROOF_SIZE, REKEY_SALT_SIZE
from weavenet.crypto.seal import MAC_SIZE, CryptoError
from weavenet.mesh.peer import MAX_NICKNAME_LEN, PeerIdentityError, PeerName
from weavenet.mesh.topology import PeerRecord, TopologyDecodeError, decode_records, encode_record
from weavenet.runtime.codec import unpack_map
from weavenet.runtime.defaults import PORT

MAGIC = b"weavenet"
PROTOCOL_MIN_VERSION = 1
PROTOCOL_MAX_VERSION = 1
MAX_MESSAGE_SIZE = 8 * 1024 * 1024
# Until the handshake accepts the remote, anyone can connect: a hello, a proof or a goodbye fits
# in this, and a stranger must not make us buffer megabytes per connection.
MAX_HANDSHAKE_MESSAGE_SIZE = 8 * 1024
PUBLIC_KEY_LEN = 32
MAX_REASON_LEN = 1024

_HEADER = struct.Struct(">8sBB")
_LENGTH = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


class WireError(Exception):
    """Input from a peer that we refuse; the connection it came on should be closed."""


class BadMagic(WireError):
    """The stream does not start with the weavenet header (not a weavenet peer)."""


class MalformedHeader(WireError):
    """The header's version range is impossible."""


class OversizedMessage(WireError):
    """A length prefix above the size limit."""


class MalformedMessage(WireError):
    """Bytes that are not a valid message of a known type."""


class UnknownMessageType(WireError):
    """A well-formed message of a type this version does not know."""


class TruncatedInput(WireError):
    """The stream ended in the middle of the header or a message."""


class SealedStreamError(WireError):
    """A sealed message that does not open: forged, replayed, reordered or truncated."""


@dataclass(frozen=True)
class ProtocolHeader:
    min_version: int
    max_version: int


@dataclass(frozen=True)
class Hello:
    """Handshake: who we are for this connection. Sent once, after the headers."""

    TYPE: ClassVar[str] = "hello"
    name: PeerName
    nickname: str
    uid: int
    conn_id: int  # random per connection; both ids combined identify the connection
    encrypt: bool
    public_key: bytes | None = None  # X25519 ephemeral key, present iff encrypt
    udp_port: int = PORT
    # the sender runs the fast datapath and answers FastdpAck-able heartbeats; absent (an
    # older peer) means no, so such a peer only ever gets the sleeve and no FastdpAck
    fastdp: bool = False


@dataclass(frozen=True)
class Proof:
    """Handshake with a password: proof that the sender holds it, bound to this connection."""

    TYPE: ClassVar[str] = "proof"
    proof: bytes


@dataclass(frozen=True)
class TopologyUpdate:
    """Peer records: incremental (what improved) or full (on connect and periodically)."""

    TYPE: ClassVar[str] = "topology"
    records: tuple[PeerRecord, ...]
    # Records the decoder refused (malformed or out of range); never on the wire.
    refused: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Heartbeat:
    """Keeps an idle TCP connection alive (UDP heartbeats prove the data path separately)."""

    TYPE: ClassVar[str] = "heartbeat"
    seq: int = 0


@dataclass(frozen=True)
class Rekey:
    """Encrypted connections only: the sender's crypto actor restarted and the connection's UDP
    keys move on with this random salt (``weavenet.crypto.keys.rekeyed_udp_keys``)."""

    TYPE: ClassVar[str] = "rekey"
    salt: bytes


@dataclass(frozen=True)
class Goodbye:
    """Why the sender is closing the connection (refused handshake, duplicate, shutdown)."""

    TYPE: ClassVar[str] = "goodbye"
    reason: str


@dataclass(frozen=True)
class FastdpAck:
    """Your fast datapath heartbeat ``seq`` reached me through my VXLAN device
    (``weavenet.mesh.overlay``). Sent only to a peer whose Hello offered fastdp."""

    TYPE: ClassVar[str] = "fastdp_ack"
    seq: int


Message = Hello | Proof | TopologyUpdate | Heartbeat | Rekey | Goodbye | FastdpAck

# Retired types: no longer sent, skipped by the decoder when a peer still sends one, and never
# reused for a different meaning. "established" ('your UDP heartbeats reach me') was never sent:
# a connection counts as established in the topology once its handshake completes, and the
# forwarder proves each UDP path with its own heartbeats.
RETIRED_TYPES = frozenset({"established"})


# -- encoding --------------------------------------------------------------------------------------


def encode_header(
    min_version: int = PROTOCOL_MIN_VERSION, max_version: int = PROTOCOL_MAX_VERSION
) -> bytes:
    return _HEADER.pack(MAGIC, min_version, max_version)


def _body(msg: Message) -> dict[str, Any]:
    if isinstance(msg, TopologyUpdate):
        return {"records": [encode_record(r) for r in msg.records]}
    return {f.name: getattr(msg, f.name) for f in fields(msg)}


def encode_body(msg: Message, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """The msgpack body of one message, without its length prefix (what a sealer seals)."""
    body = msgpack.packb({"type": msg.TYPE, **_body(msg)}, use_bin_type=True)
    if len(body) > max_size:
        raise OversizedMessage(f"{msg.TYPE} message of {len(body)} bytes exceeds {max_size}")
    return body


def frame(body: bytes) -> bytes:
    """A clear body with its length prefix, ready to write to the socket."""
    return _LENGTH.pack(len(body)) + body


def encode(msg: Message, max_size: int = MAX_MESSAGE_SIZE) -> bytes:
    """One framed clear message, ready to write to the socket."""
    return frame(encode_body(msg, max_size))


# -- decoding --------------------------------------------------------------------------------------


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    # bool is an int subclass; an int field must not accept True.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedMessage(f"field {key!r} missing or of the wrong type")
    return value


def _uint(obj: dict[str, Any], key: str, bits: int) -> int:
    value = _get(obj, key, int)
    if not 0 <= value < (1 << bits):
        raise MalformedMessage(f"field {key!r} out of range")
    return value


def _short_str(obj: dict[str, Any], key: str, limit: int) -> str:
    value = _get(obj, key, str)
    if len(value) > limit:
        raise MalformedMessage(f"field {key!r} longer than {limit}")
    return value


def _hello(obj: dict[str, Any]) -> Hello:
    try:
        name = PeerName(_get(obj, "name", str))
    except PeerIdentityError as exc:
        raise MalformedMessage(str(exc)) from None
    encrypt = _get(obj, "encrypt", bool)
    key = obj.get("public_key")
    if key is not None and (not isinstance(key, bytes) or len(key) != PUBLIC_KEY_LEN):
        raise MalformedMessage("public_key must be 32 bytes")
    if encrypt != (key is not None):
        raise MalformedMessage("public_key must be present exactly when encrypt is set")
    port = _uint(obj, "udp_port", 16)
    if port == 0:
        raise MalformedMessage("udp_port must be non-zero")
    return Hello(
        name=name,
        nickname=_short_str(obj, "nickname", MAX_NICKNAME_LEN),
        uid=_uint(obj, "uid", 64),
        conn_id=_uint(obj, "conn_id", 64),
        encrypt=encrypt,
        public_key=key,
        udp_port=port,
        fastdp=obj.get("fastdp") is True,
    )


def _proof(obj: dict[str, Any]) -> Proof:
    proof = _get(obj, "proof", bytes)
    if len(proof) != PROOF_SIZE:
        raise MalformedMessage(f"proof must be {PROOF_SIZE} bytes")
    return Proof(proof)


def _rekey(obj: dict[str, Any]) -> Rekey:
    salt = _get(obj, "salt", bytes)
    if len(salt) != REKEY_SALT_SIZE:
        raise MalformedMessage(f"salt must be {REKEY_SALT_SIZE} bytes")
    return Rekey(salt)


def _topology(obj: dict[str, Any]) -> TopologyUpdate:
    try:
        records, refused = decode_records(obj.get("records"))
    except TopologyDecodeError as exc:
        raise MalformedMessage(str(exc)) from None
    return TopologyUpdate(records, refused)


_DECODERS = {
    Hello.TYPE: _hello,
    Proof.TYPE: _proof,
    TopologyUpdate.TYPE: _topology,
    Heartbeat.TYPE: lambda o: Heartbeat(_uint(o, "seq", 64)),
    Rekey.TYPE: _rekey,
    Goodbye.TYPE: lambda o: Goodbye(_short_str(o, "reason", MAX_REASON_LEN)),
    FastdpAck.TYPE: lambda o: FastdpAck(_uint(o, "seq", 64)),
}


def decode_message(body: bytes) -> Message | None:
    """One message from its msgpack body (the length prefix already removed); None for a message
    of a retired type, which the receiver ignores."""
    obj = unpack_map(body, MalformedMessage, "message")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise MalformedMessage("message has no type")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        if kind in RETIRED_TYPES:
            return None
        raise UnknownMessageType(f"unknown message type {kind[:64]!r}")
    return decoder(obj)


def decode_header(data: bytes) -> ProtocolHeader:
    magic, lo, hi = _HEADER.unpack(data)
    if magic != MAGIC:
        raise BadMagic("not a weavenet peer (bad magic)")
    if lo == 0 or lo > hi:
        raise MalformedHeader(f"impossible protocol version range {lo}..{hi}")
    return ProtocolHeader(lo, hi)


class Decoder:
    """Incremental decoder for one direction of one connection.

    The first item out is the ``ProtocolHeader``; messages follow. After a ``WireError`` the
    decoder stays failed: the connection is beyond repair.

    ``pause_after``: message types after which the clear part of the stream may end (``Proof``
    on an encrypting connection). The decoder stops there and keeps what follows buffered, as it
    may be sealed, until ``open_with`` (sealed from then on).

    ``handshake_limit``: the largest message accepted until ``end_handshake``. Meanwhile each
    ``feed`` decodes at most one message, so the caller can end the handshake before the next
    length prefix (perhaps the first big topology update) is checked against the limit.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE,
                 pause_after: tuple[type, ...] = (), handshake_limit: int | None = None) -> None:
        self.max_message_size = max_message_size
        self.pause_after = pause_after
        self.handshake_limit = handshake_limit
        self._buf = bytearray()
        self._header_done = False
        self._error: WireError | None = None
        self._paused = False
        self._open: Callable[[bytes], bytes] | None = None
        self._overhead = 0

    @property
    def paused(self) -> bool:
        return self._paused

    def open_with(self, open_: Callable[[bytes], bytes]) -> None:
        """Every message from now on is a sealed box; ``open_`` turns one into its body and
        raises (any ``CryptoError``) for a box that does not open."""
        self._open = open_
        self._overhead = MAC_SIZE
        self._paused = False

    def end_handshake(self) -> None:
        """The remote is accepted: messages up to ``max_message_size`` from now on."""
        self.handshake_limit = None

    def feed(self, data: bytes) -> list[ProtocolHeader | Message]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[ProtocolHeader | Message] = []
        if self._paused:
            return out
        try:
            self._drain(out)
        except WireError as exc:
            self._error = exc
            raise
        return out

    def _drain(self, out: list[ProtocolHeader | Message]) -> None:
        buf = self._buf
        if not self._header_done:
            # Check the magic as soon as it can be wrong, so garbage is refused without waiting.
            seen = bytes(buf[: len(MAGIC)])
            if not MAGIC.startswith(seen):
                raise BadMagic("not a weavenet peer (bad magic)")
            if len(buf) < HEADER_SIZE:
                return
            out.append(decode_header(bytes(buf[:HEADER_SIZE])))
            del buf[:HEADER_SIZE]
            self._header_done = True
        pos = 0
        one_at_a_time = self.handshake_limit is not None
        if self.handshake_limit is not None:
            limit = min(self.handshake_limit, self.max_message_size) + self._overhead
        else:
            limit = self.max_message_size + self._overhead
        pause_after = self.pause_after
        while len(buf) - pos >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buf, pos)
            if length > limit:
                raise OversizedMessage(f"message of {length} bytes exceeds {limit}")
            if length == 0:
                raise MalformedMessage("empty message")
            end = pos + _LENGTH.size + length
            if len(buf) < end:
                break
            body = bytes(buf[pos + _LENGTH.size : end])
            pos = end
            if self._open is not None:
                try:
                    body = self._open(body)
                except CryptoError as exc:
                    del buf[:pos]
                    raise SealedStreamError(f"sealed message rejected: {exc}") from None
            msg = decode_message(body)
            if msg is None:
                continue
            out.append(msg)
            if self._open is None and isinstance(msg, pause_after):
                self._paused = True  # what follows may be sealed: wait for open_with
                break
            if one_at_a_time:
                break
        del buf[:pos]

    def close(self) -> None:
        """The peer closed the stream: leftover bytes mean it stopped mid-message."""
        if self._error is None and self._buf:
            self._error = TruncatedInput(f"stream ended with {len(self._buf)} undecoded bytes")
            raise self._error

    @property
    def buffered(self) -> int:
        return len(self._buf)
