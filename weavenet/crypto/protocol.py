"""Messages between the forwarder and the crypto actor, and the key requests from gossip.

Data socket (forwarder DEALER -> crypto ROUTER at ``Endpoints.crypto``), one multipart message
per batch::

    request: [header, p1, ..., pn]   header = msgpack {"op": "seal"|"open", "peer": str, "tag": any}
    reply:   [header, r1, ..., rn]   header = msgpack {"op", "peer", "tag", "epoch", "failed"}
    send:    [header, p1, ..., pn]   header = msgpack {"op": "send", "peer": str,
                                                       "addr": [ip, port], "piece": int,
                                                       "sender": int}   (no reply)

``send`` is the sending side's one-way stage: seal each FRAMES body for ``peer`` and send it
from the router's UDP socket to ``addr``, behind the clear prefix of ``sender`` (our wire peer
id), as FRAGMENT pieces of ``piece`` bytes where it is bigger; failures are counted by the
crypto actor, nobody is answered. ``open`` keeps its round trip: the forwarder needs the opened
frames, to deliver or relay them. ``seal`` (seal and reply) is the same service without the
send, for tests and tools.

Payloads are raw ZeroMQ parts, never inside msgpack. The reply has exactly as many parts as the
request, in the same order; ``r_i`` is the sealed (``seq u64 || MAC || ciphertext``) or opened
payload, or an EMPTY part where item i failed. An empty payload is therefore never valid in either
direction. ``epoch`` is the connection the peer's current keys belong to (None when there are
none); ``failed`` counts the empty parts; ``tag`` is whatever the sender put there, echoed.

Key requests (bus envelopes from gossip through the supervisor): :class:`Install`
(``crypto.install``) and :class:`ForgetKeys` (``crypto.forget``); both answer ``{}``.

Nothing here does I/O; the data socket's decoders reject malformed input with
:class:`CryptoProtoError`, the key requests' with a usage error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import msgpack

from weavenet.crypto.sizes import DATAGRAM_OVERHEAD, KEY_SIZE
from weavenet.runtime.codec import Buffer, unpack_map
from weavenet.runtime.request import Request as BusRequest
from weavenet.runtime.request import UsageError

SEAL = "seal"
OPEN = "open"
SEND = "send"
OPS = frozenset((SEAL, OPEN, SEND))
MAX_HEADER_LEN = 4096
# A whole batch of frames (weavenet.dataplane.batch.MAX_BATCH, checked by a unit test) goes
# in one request; crypto sits below the data plane, so the number is written here too.
MAX_ITEMS = 4096
# a UDP payload never exceeds 65507 bytes; anything larger cannot have come from or go to a peer
MAX_PAYLOAD = 0xFFFF
MAX_UDP = 65507  # the largest IPv4 UDP payload: the most a piece can be
MAX_PEER_NAME = 255
MAX_EPOCH = 2**64 - 1
MAX_SENDER = 2**48 - 1  # a wire peer id (weavenet.dataplane.sleeve.peer_to_wire)
OVERHEAD = DATAGRAM_OVERHEAD  # sealed length = payload length + OVERHEAD


class CryptoProtoError(ValueError):
    """A malformed crypto request, reply or key message."""


@dataclass(frozen=True)
class Request:
    op: str
    peer: str
    tag: Any = None
    # only with op "send": where the sealed datagrams go, their piece size, our wire id
    addr: tuple[str, int] | None = None
    piece: int = 0
    sender: int = 0


@dataclass(frozen=True)
class Reply:
    op: str
    peer: str
    tag: Any
    epoch: int | None
    failed: int


def _raw(part: Any) -> Buffer:
    # zmq.Frame (copy=False) exposes its memory as .buffer; bytes/memoryview pass through
    buf = getattr(part, "buffer", part)
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise CryptoProtoError(f"unsupported part type {type(part).__name__}")
    return buf


def _unpack_header(part: Any) -> dict[str, Any]:
    raw = _raw(part)
    return unpack_map(raw, CryptoProtoError, "header", MAX_HEADER_LEN)


def _peer(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_PEER_NAME:
        raise CryptoProtoError("peer must be a non-empty string")
    return value


def _op(value: Any) -> str:
    if value not in OPS:
        raise CryptoProtoError(f"unknown op {value!r}")
    return value


def _count(n: int) -> None:
    if not 0 < n <= MAX_ITEMS:
        raise CryptoProtoError(f"{n} payloads; a batch carries 1..{MAX_ITEMS}")


def encode_request(op: str, peer: str, payloads: Sequence[Any], tag: Any = None) -> list[Any]:
    """Parts for ``dealer.send_multipart(parts, copy=False)``."""
    _op(op)
    _peer(peer)
    _count(len(payloads))
    return [msgpack.packb({"op": op, "peer": peer, "tag": tag}), *payloads]


def encode_send(peer: str, addr: tuple[str, int], piece: int, sender: int,
                payloads: Sequence[Any]) -> list[Any]:
    """Parts of a ``send`` message, for ``send_multipart(parts, copy=False)``."""
    _peer(peer)
    _count(len(payloads))
    return [msgpack.packb({"op": SEND, "peer": peer, "addr": list(addr), "piece": piece,
                           "sender": sender}), *payloads]


def _int(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CryptoProtoError(f"{name} must be an integer in {low}..{high}")
    return value


def _addr(value: Any) -> tuple[str, int]:
    if not isinstance(value, list | tuple) or len(value) != 2 or not isinstance(value[0], str) \
            or not 0 < len(value[0]) <= 64:
        raise CryptoProtoError("addr must be [ip, port]")
    return value[0], _int(value[1], 1, 0xFFFF, "port")


def decode_request(parts: Sequence[Any]) -> tuple[Request, Sequence[Any]]:
    """Split ``[header, p1..pn]`` (routing id already removed); payloads are returned as given.

    Payload sizes are not checked here: an oversized item fails alone, not the whole batch."""
    if len(parts) < 2:
        raise CryptoProtoError(f"request of {len(parts)} parts has no payload")
    _count(len(parts) - 1)
    header = _unpack_header(parts[0])
    op, peer = _op(header.get("op")), _peer(header.get("peer"))
    if op == SEND:
        return Request(op, peer, None, _addr(header.get("addr")),
                       _int(header.get("piece"), 64, MAX_UDP, "piece"),
                       _int(header.get("sender"), 1, MAX_SENDER, "sender")), parts[1:]
    return Request(op, peer, header.get("tag")), parts[1:]


def encode_reply_header(req: Request, epoch: int | None, failed: int) -> bytes:
    return msgpack.packb({"op": req.op, "peer": req.peer, "tag": req.tag,
                          "epoch": epoch, "failed": failed})


def decode_reply(parts: Sequence[Any]) -> tuple[Reply, list[Buffer]]:
    """Split a reply into its header and result parts (empty where an item failed)."""
    if len(parts) < 2:
        raise CryptoProtoError(f"reply of {len(parts)} parts has no results")
    _count(len(parts) - 1)
    header = _unpack_header(parts[0])
    epoch = header.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise CryptoProtoError("epoch must be an integer or nil")
    failed = header.get("failed")
    if isinstance(failed, bool) or not isinstance(failed, int) or not 0 <= failed < len(parts):
        raise CryptoProtoError("failed count out of range")
    results = [_raw(p) for p in parts[1:]]
    reply = Reply(_op(header.get("op")), _peer(header.get("peer")), header.get("tag"),
                  epoch, failed)
    return reply, results


# -- key requests (bus envelopes from gossip) ---------------------------------------------------
def _key(body: Mapping[str, Any], name: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise UsageError(f"{name} must be {KEY_SIZE} bytes")
    return value


def _epoch(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EPOCH:
        raise UsageError("epoch must be an integer in 0..2**64-1")
    return value


def _key_peer(value: Any) -> str:
    try:
        return _peer(value)
    except CryptoProtoError as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True)
class Install(BusRequest):
    """Session keys for one peer's connection; the keys are never shown in reprs or logs.

    Body ``{"peer": name, "epoch": u64, "udp_send": 32 bytes, "udp_recv": 32 bytes}``; reply
    ``{}``. Replaces the peer's sealer and opener (the previous opener keeps opening for a short
    grace, see ``weavenet.crypto.keyring``). The identical install again (a retry) is a no-op; a
    key already used in the same role, for any peer, is refused with a "usage" error, and so are
    equal send and receive keys. ``epoch`` is an opaque connection id (random in gossip).
    Handled by the crypto actor; sent by gossip (through the supervisor) when a connection with
    encryption is established. No CLI command.
    """

    TYPE = "crypto.install"
    HANDLER = "crypto"

    peer: str
    epoch: int
    udp_send: bytes = field(repr=False)
    udp_recv: bytes = field(repr=False)

    def to_body(self) -> dict[str, Any]:
        return {"peer": self.peer, "epoch": self.epoch, "udp_send": self.udp_send,
                "udp_recv": self.udp_recv}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        peer, epoch = _key_peer(body.get("peer")), _epoch(body.get("epoch"))
        send, recv = _key(body, "udp_send"), _key(body, "udp_recv")
        if send == recv:
            # one key for both directions would let our own datagrams be reflected back at us
            raise UsageError("udp_send and udp_recv must differ")
        return cls(peer, epoch, send, recv)


@dataclass(frozen=True)
class ForgetKeys(BusRequest):
    """Drop one peer's keys: its connection is gone.

    Body ``{"peer": name}``; reply ``{}`` (also when the peer had no keys). Handled by the
    crypto actor; sent by gossip (through the supervisor) when an encrypted connection closes.
    No CLI command.
    """

    TYPE = "crypto.forget"
    HANDLER = "crypto"

    peer: str

    def to_body(self) -> dict[str, Any]:
        return {"peer": self.peer}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(_key_peer(body.get("peer")))
