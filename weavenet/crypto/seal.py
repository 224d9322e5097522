"""Sealing and opening of peer traffic with session keys (sans-IO).

Two channels, each with its own keys (see `weavenet.crypto.keys`), both NaCl SecretBox
(XSalsa20-Poly1305):

- **TCP control stream** (`StreamSealer` / `StreamOpener`): each message travels as
  `u32 big-endian length || box`, where `box` is the 16-byte MAC plus ciphertext. The nonce is an
  implicit per-direction counter, so a dropped, reordered, replayed or tampered message fails
  authentication. TCP never reorders, so any failure means an attack or a bug and the caller must
  close the connection; the opener refuses all further input once it has failed.
- **UDP sleeve datagrams** (`DatagramSealer` / `DatagramOpener`): `u64 big-endian seq || box`.
  The sequence number is the nonce, so it is authenticated without associated data: changing it
  changes the nonce and the MAC no longer verifies. The underlay may lose or reorder datagrams, so
  the opener accepts gaps and reordering within a sliding `ReplayWindow` and drops (and counts)
  replays and datagrams older than the window.

Nonces are never reused because (1) every key is used by exactly one sealer in one direction on one
channel of one connection, (2) keys come from fresh ephemeral X25519 keys per connection, so a
restarted actor never gets an old key back, and (3) a sealer refuses to go past 2**64 - 2 rather
than wrap its counter.

The datagram path runs once per frame batch: it keeps the raw key and calls libsodium through
PyNaCl's bindings directly (no per-call object or key derivation, one struct pack for the nonce).
"""

from __future__ import annotations

import struct

import nacl.exceptions
from nacl.bindings import crypto_secretbox_easy, crypto_secretbox_open_easy

from weavenet.crypto.replay import DEFAULT_WIDTH, ReplayWindow
from weavenet.crypto.sizes import (  # noqa: F401  (part of this module's interface)
    DATAGRAM_OVERHEAD,
    KEY_SIZE,
    LENGTH_SIZE,
    MAC_SIZE,
    SEQ_SIZE,
    STREAM_OVERHEAD,
)

# counters run 0 .. SEQ_LIMIT - 1; the all-ones value is never used so a counter cannot wrap
SEQ_LIMIT = 2**64 - 1
DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024  # control messages (full topology) stay far below this

_SEQ = struct.Struct(">Q")
_LENGTH = struct.Struct(">I")
# SecretBox nonces are 24 bytes; the 8-byte counter fills the front and the rest stays zero.
# Uniqueness comes from the counter under a key that nothing else uses.
_NONCE_PAD = bytes(24 - SEQ_SIZE)


class CryptoError(Exception):
    """Base of every sealing, opening and key-exchange failure."""


class ForgedMessage(CryptoError):
    """Authentication failed: tampered, reordered, replayed (stream) or sealed with another key."""


class MalformedBox(CryptoError):
    """Too short, oversized or otherwise not a sealed message."""


class ReplayedDatagram(CryptoError):
    """A datagram whose sequence number was already seen or is older than the replay window."""


class NonceExhausted(CryptoError):
    """The sealer's counter reached its limit; the connection must be re-keyed."""


class StreamBroken(CryptoError):
    """The stream opener failed earlier; the connection must be closed, not resumed."""


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise ValueError(f"a session key is {KEY_SIZE} bytes")
    return key


def _check_limit(limit: int) -> int:
    if not 0 < limit <= SEQ_LIMIT:
        raise ValueError(f"counter limit must be in 1..{SEQ_LIMIT}")
    return limit


class DatagramSealer:
    """Seal UDP payloads for one direction of one connection."""

    __slots__ = ("_key", "_next", "_limit")

    def __init__(self, key: bytes, *, limit: int = SEQ_LIMIT) -> None:
        # `limit` below the maximum lets a caller force re-keying after fewer datagrams
        self._key = _check_key(key)
        self._limit = _check_limit(limit)
        self._next = 0

    @property
    def sealed(self) -> int:
        """How many datagrams this sealer has produced (the next sequence number)."""
        return self._next

    def seal(self, payload: bytes) -> bytes:
        """Return `seq || box` for `payload` (bytes; PyNaCl does not take memoryviews)."""
        seq = self._next
        if seq >= self._limit:
            raise NonceExhausted("datagram counter exhausted; re-key the connection")
        self._next = seq + 1
        header = _SEQ.pack(seq)
        return header + crypto_secretbox_easy(payload, header + _NONCE_PAD, self._key)


class DatagramOpener:
    """Open UDP datagrams from one direction of one connection; count what is dropped."""

    __slots__ = ("_key", "_window", "opened", "replayed", "forged", "malformed")

    def __init__(self, key: bytes, *, window: int = DEFAULT_WIDTH) -> None:
        self._key = _check_key(key)
        self._window = ReplayWindow(window)
        self.opened = 0
        self.replayed = 0
        self.forged = 0
        self.malformed = 0

    def open(self, datagram: bytes) -> bytes:
        """Return the payload, or raise (and count) `MalformedBox`, `ReplayedDatagram` or
        `ForgedMessage`. The window only moves for authentic datagrams, so forged sequence
        numbers cannot push genuine traffic out of it."""
        if len(datagram) < DATAGRAM_OVERHEAD:
            self.malformed += 1
            raise MalformedBox(f"datagram of {len(datagram)} bytes is too short")
        header = datagram[:SEQ_SIZE]
        (seq,) = _SEQ.unpack(header)
        # cheap pre-filter before spending a decryption on a replay
        if not self._window.check(seq):
            self.replayed += 1
            raise ReplayedDatagram(f"datagram {seq} replayed or older than the window")
        try:
            payload = crypto_secretbox_open_easy(
                datagram[SEQ_SIZE:], header + _NONCE_PAD, self._key
            )
        except nacl.exceptions.CryptoError:
            self.forged += 1
            raise ForgedMessage("datagram failed authentication") from None
        self._window.check_and_update(seq)
        self.opened += 1
        return payload

    def stats(self) -> dict[str, int]:
        return {
            "opened": self.opened,
            "replayed": self.replayed,
            "forged": self.forged,
            "malformed": self.malformed,
        }


class StreamSealer:
    """Seal control messages for one direction of a TCP connection."""

    __slots__ = ("_key", "_next", "_limit", "_max_message")

    def __init__(
        self, key: bytes, *, limit: int = SEQ_LIMIT, max_message: int = DEFAULT_MAX_MESSAGE
    ) -> None:
        self._key = _check_key(key)
        self._limit = _check_limit(limit)
        self._max_message = max_message
        self._next = 0

    def seal(self, message: bytes) -> bytes:
        """Return `length || box`, ready to write to the socket."""
        if len(message) > self._max_message:
            raise ValueError(f"message of {len(message)} bytes exceeds {self._max_message}")
        counter = self._next
        if counter >= self._limit:
            raise NonceExhausted("stream counter exhausted; re-key the connection")
        self._next = counter + 1
        box = crypto_secretbox_easy(message, _SEQ.pack(counter) + _NONCE_PAD, self._key)
        return _LENGTH.pack(len(box)) + box


class StreamOpener:
    """Open control messages from one direction of a TCP connection.

    Use `feed` with raw socket bytes (it deframes), or `open` with one `box` if the caller already
    split frames on the length prefix. Do not mix the two on one opener."""

    __slots__ = ("_key", "_next", "_max_message", "_buffer", "_broken")

    def __init__(self, key: bytes, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self._key = _check_key(key)
        self._max_message = max_message
        self._next = 0
        self._buffer = bytearray()
        self._broken = False

    def open(self, box: bytes) -> bytes:
        """Open the next message; any failure is permanent for this opener."""
        if self._broken:
            raise StreamBroken("stream already failed; close the connection")
        try:
            if not MAC_SIZE <= len(box) <= self._max_message + MAC_SIZE:
                raise MalformedBox(f"sealed message of {len(box)} bytes")
            try:
                message = crypto_secretbox_open_easy(
                    box, _SEQ.pack(self._next) + _NONCE_PAD, self._key
                )
            except nacl.exceptions.CryptoError:
                raise ForgedMessage("stream message failed authentication") from None
        except CryptoError:
            self._broken = True
            raise
        # the counter only advances on success; a failure above already broke the stream
        self._next += 1
        return message

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the socket; return every message they complete, in order."""
        if self._broken:
            raise StreamBroken("stream already failed; close the connection")
        buffer = self._buffer
        buffer += data
        messages: list[bytes] = []
        offset = 0
        while len(buffer) - offset >= LENGTH_SIZE:
            (length,) = _LENGTH.unpack_from(buffer, offset)
            if not MAC_SIZE <= length <= self._max_message + MAC_SIZE:
                # refuse before buffering: a forged length must not make us wait for gigabytes
                self._broken = True
                raise MalformedBox(f"sealed message length {length} out of range")
            end = offset + LENGTH_SIZE + length
            if len(buffer) < end:
                break
            messages.append(self.open(bytes(buffer[offset + LENGTH_SIZE : end])))
            offset = end
        del buffer[:offset]
        return messages
