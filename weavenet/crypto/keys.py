"""Per-connection session keys from an ephemeral X25519 exchange and the network password.

How a connection uses this (the gossip actor drives it; nothing here does I/O):

1. Each side makes a `KeyExchange(password)` for the new TCP connection and puts
   `exchange.public_key` in its Hello (a fresh key pair every time, so keys never repeat).
2. After both Hellos, each side calls `exchange.complete(role, local, remote)` with both Hellos as
   `HandshakeParty` values. `role` is INITIATOR on the side that dialed. Both sides derive the same
   `SessionKeys`, mirrored: A's `tcp_send` is B's `tcp_recv`, and so on.
3. Password proof, in this order: the initiator sends `keys.local_proof`; the responder checks it
   with `keys.verify_remote_proof` and only then sends its own proof; the initiator checks that.
   Nothing else is sealed or sent before the proof a side needs has verified.

Why this offers no password-guessing oracle beyond the unavoidable:
- Every key and proof comes from a master secret keyed by the password over the X25519 shared
  secret. A passive eavesdropper sees only public keys and proofs; without the shared secret
  (Diffie-Hellman) it cannot compute a proof for a guessed password, so it cannot test guesses.
- An active attacker who dials in must prove first and cannot; the responder refuses without
  sending its proof or anything sealed, so each attempt costs the attacker one online guess.
- An attacker who gets a peer to dial *it* (or sits in the middle) does learn the initiator's
  proof under a shared secret it knows, and can test guesses offline. That is unavoidable for a
  password mixed into an unauthenticated DH (only a PAKE would avoid it); we raise the price of
  each guess by stretching the password with Argon2id once, at launch.
The transcript (both names, incarnations, connection ids and public keys) is hashed into the
master secret, so keys and proofs are bound to this connection and cannot be replayed elsewhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
from nacl.bindings import crypto_scalarmult
from nacl.encoding import RawEncoder
from nacl.hash import blake2b
from nacl.public import PrivateKey

from weavenet.crypto.primitives import compare_digest
from weavenet.crypto.seal import (
    KEY_SIZE,
    CryptoError,
    DatagramOpener,
    DatagramSealer,
    StreamOpener,
    StreamSealer,
)

PUBLIC_KEY_SIZE = 32
PROOF_SIZE = 32
# Part of the protocol: both sides must stretch the password identically. A fixed salt only stops
# precomputation shared with other systems; it cannot be per-network without a shared secret.
PASSWORD_SALT = b"weavenet/pw/v1\x00\x00"
PASSWORD_OPSLIMIT = argon2id.OPSLIMIT_INTERACTIVE
PASSWORD_MEMLIMIT = argon2id.MEMLIMIT_INTERACTIVE
_TRANSCRIPT_LABEL = b"weavenet key exchange v1"


class HandshakeError(CryptoError):
    """The remote half of the exchange is unusable (bad or low-order public key, reflection)."""


class PasswordMismatch(CryptoError):
    """The remote proof does not verify: the peers hold different passwords."""


class Role(enum.Enum):
    INITIATOR = "initiator"  # dialed the TCP connection
    RESPONDER = "responder"  # accepted it


class Password:
    """The network password, kept only as its Argon2id-stretched value; never shown."""

    __slots__ = ("_derived",)

    def __init__(
        self,
        secret: str | bytes,
        *,
        opslimit: int = PASSWORD_OPSLIMIT,
        memlimit: int = PASSWORD_MEMLIMIT,
    ) -> None:
        raw = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not raw:
            raise ValueError("the password must not be empty")
        self._derived = argon2id.kdf(
            KEY_SIZE, raw, PASSWORD_SALT, opslimit=opslimit, memlimit=memlimit
        )

    @classmethod
    def from_derived(cls, derived: bytes) -> Password:
        """Rebuild from `derived_secret()`, e.g. in an actor, without stretching again."""
        if len(derived) != KEY_SIZE:
            raise ValueError(f"a derived password is {KEY_SIZE} bytes")
        password = cls.__new__(cls)
        password._derived = bytes(derived)
        return password

    def derived_secret(self) -> bytes:
        """The stretched value: as good as the password for this network, so never log it."""
        return self._derived

    def __repr__(self) -> str:
        return "Password(<redacted>)"

    __str__ = __repr__


@dataclass(frozen=True)
class HandshakeParty:
    """One side's Hello fields that the keys are bound to."""

    name: str  # peer name
    uid: int  # incarnation
    connection_id: int  # this side's connection id (the same value on both sides if shared)
    public_key: bytes = field(repr=False)  # ephemeral X25519


@dataclass(frozen=True, repr=False, eq=False)
class SessionKeys:
    """Everything one side of one connection needs; mirrored on the other side."""

    role: Role
    tcp_send: bytes
    tcp_recv: bytes
    udp_send: bytes
    udp_recv: bytes
    local_proof: bytes
    _expected_remote_proof: bytes

    def verify_remote_proof(self, proof: bytes) -> None:
        """Raise `PasswordMismatch` unless `proof` is the remote side's proof for this session."""
        if not isinstance(proof, bytes):
            raise PasswordMismatch("malformed password proof")
        if not compare_digest(proof, self._expected_remote_proof):
            raise PasswordMismatch("password mismatch")

    def stream_sealer(self) -> StreamSealer:
        return StreamSealer(self.tcp_send)

    def stream_opener(self) -> StreamOpener:
        return StreamOpener(self.tcp_recv)

    def datagram_sealer(self) -> DatagramSealer:
        return DatagramSealer(self.udp_send)

    def datagram_opener(self) -> DatagramOpener:
        return DatagramOpener(self.udp_recv)

    def __repr__(self) -> str:
        return f"SessionKeys(role={self.role.value}, <keys redacted>)"


def _int_field(value: int) -> bytes:
    # Hello fields come off the network: anything odd is a handshake failure, not a crash
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise HandshakeError(f"transcript integer out of range: {value!r}")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return len(raw).to_bytes(1, "big") + raw  # length prefix keeps the encoding unambiguous


def _party_field(party: HandshakeParty) -> bytes:
    if not isinstance(party.name, str) or not 0 < len(party.name) < 1024:
        raise HandshakeError("malformed peer name in handshake")
    name = party.name.encode()
    return (
        len(name).to_bytes(2, "big")
        + name
        + _int_field(party.uid)
        + _int_field(party.connection_id)
        + party.public_key
    )


def _prf(key: bytes, label: bytes, size: int = KEY_SIZE) -> bytes:
    # keyed BLAKE2b is a PRF; a distinct personalisation separates expansion from everything else
    return blake2b(label, digest_size=size, key=key, person=b"weavenet-expand", encoder=RawEncoder)


def derive_session_keys(
    password: Password,
    own_private_key: bytes,
    role: Role,
    local: HandshakeParty,
    remote: HandshakeParty,
) -> SessionKeys:
    """Deterministic core of the exchange (pure: same inputs, same keys)."""
    for party in (local, remote):
        if not isinstance(party.public_key, bytes) or len(party.public_key) != PUBLIC_KEY_SIZE:
            raise HandshakeError(f"malformed public key from {party.name!r}")
    if compare_digest(local.public_key, remote.public_key):
        # our own key reflected back: refuse rather than talk to ourselves
        raise HandshakeError("remote public key equals ours")
    try:
        shared = crypto_scalarmult(own_private_key, remote.public_key)
    except nacl.exceptions.CryptoError:
        # libsodium refuses an all-zero result, i.e. a low-order remote public key
        raise HandshakeError("remote public key is weak") from None

    initiator, responder = (local, remote) if role is Role.INITIATOR else (remote, local)
    transcript = _TRANSCRIPT_LABEL + _party_field(initiator) + _party_field(responder)
    transcript_hash = blake2b(
        transcript, digest_size=32, person=b"weavenet-thash", encoder=RawEncoder
    )
    # Extract: both secrets in, neither alone suffices (the password key, the DH secret as data)
    master = blake2b(
        shared + transcript_hash,
        digest_size=64,
        key=password.derived_secret(),
        person=b"weavenet-master",
        encoder=RawEncoder,
    )

    def key(label: bytes) -> bytes:
        return _prf(master, label)

    i2r = {"tcp": key(b"tcp initiator->responder"), "udp": key(b"udp initiator->responder")}
    r2i = {"tcp": key(b"tcp responder->initiator"), "udp": key(b"udp responder->initiator")}
    # proofs differ per direction so a proof reflected back at its sender does not verify
    proof_i = _prf(master, b"proof initiator", PROOF_SIZE)
    proof_r = _prf(master, b"proof responder", PROOF_SIZE)
    send, recv = (i2r, r2i) if role is Role.INITIATOR else (r2i, i2r)
    local_proof, remote_proof = (proof_i, proof_r) if role is Role.INITIATOR else (proof_r, proof_i)
    return SessionKeys(
        role=role,
        tcp_send=send["tcp"],
        tcp_recv=recv["tcp"],
        udp_send=send["udp"],
        udp_recv=recv["udp"],
        local_proof=local_proof,
        _expected_remote_proof=remote_proof,
    )


REKEY_SALT_SIZE = 32


def combine_salts(a: bytes, b: bytes) -> bytes:
    """Fold one more re-key salt into a connection's: XOR, so two re-keys that cross on the wire
    (each side's crypto actor restarted at once) end in the same keys on both sides."""
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def rekeyed_udp_keys(udp_send: bytes, udp_recv: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """A connection's UDP keys (send, receive) after re-keys whose salts combine to ``salt``.

    For a restarted crypto actor, which lost its sealers' counters and replay windows: keys
    reinstalled as they were would reuse nonces and accept replays, so the connection moves to
    fresh keys instead, without a new exchange. The salt is random and travels sealed over the
    connection's TCP stream; each key is a PRF of the handshake's key and the salt, so the other
    side's receive key follows our send key (mirrored, as in the handshake), and no key repeats
    while salts do not.
    """
    if len(salt) != REKEY_SALT_SIZE:
        raise ValueError(f"a re-key salt is {REKEY_SALT_SIZE} bytes")
    return _prf(udp_send, b"udp rekey" + salt), _prf(udp_recv, b"udp rekey" + salt)


class KeyExchange:
    """One side of one connection's exchange: a fresh X25519 key pair, used once."""

    __slots__ = ("_password", "_private_key", "public_key")

    def __init__(self, password: Password) -> None:
        self._password = password
        private = PrivateKey.generate()
        self._private_key: bytes | None = bytes(private)
        self.public_key: bytes = bytes(private.public_key)

    def complete(self, role: Role, local: HandshakeParty, remote: HandshakeParty) -> SessionKeys:
        """Derive this connection's keys; `local.public_key` must be `self.public_key`."""
        if self._private_key is None:
            raise RuntimeError("a KeyExchange is single-use; make a new one per connection")
        if local.public_key != self.public_key:
            raise ValueError("local HandshakeParty does not carry this exchange's public key")
        private, self._private_key = self._private_key, None  # drop it: keys die with the session
        return derive_session_keys(self._password, private, role, local, remote)

    def __repr__(self) -> str:
        return "KeyExchange(<ephemeral>)"
