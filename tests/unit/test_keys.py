"""Session keys: derivation, separation, mirroring, password proof, freshness per connection."""

from __future__ import annotations

import pickle
from dataclasses import replace

import nacl.pwhash.argon2id as argon2id
import pytest
from nacl.public import PrivateKey

from weavenet.crypto.keys import (
    HandshakeError,
    HandshakeParty,
    KeyExchange,
    Password,
    PasswordMismatch,
    Role,
    SessionKeys,
    derive_session_keys,
    rekeyed_udp_keys,
)
from weavenet.crypto.seal import DatagramOpener, DatagramSealer, ForgedMessage

FAST = {"opslimit": argon2id.OPSLIMIT_MIN, "memlimit": argon2id.MEMLIMIT_MIN}


def password(secret: str = "wEaVe") -> Password:
    return Password(secret, **FAST)  # cheap stretching: these tests are about the derivation


def key_pair(seed: int) -> tuple[bytes, bytes]:
    private = PrivateKey(bytes([seed]) * 32)
    return bytes(private), bytes(private.public_key)


A_PRIV, A_PUB = key_pair(1)
B_PRIV, B_PUB = key_pair(2)
A = HandshakeParty(name="aa:aa:aa:aa:aa:01", uid=111, connection_id=7, public_key=A_PUB)
B = HandshakeParty(name="bb:bb:bb:bb:bb:02", uid=222, connection_id=9, public_key=B_PUB)


def both_sides(
    pw_a: Password | None = None, pw_b: Password | None = None
) -> tuple[SessionKeys, SessionKeys]:
    """A dialed B."""
    a = derive_session_keys(pw_a or password(), A_PRIV, Role.INITIATOR, A, B)
    b = derive_session_keys(pw_b or password(), B_PRIV, Role.RESPONDER, B, A)
    return a, b


def all_keys(keys: SessionKeys) -> list[bytes]:
    return [keys.tcp_send, keys.tcp_recv, keys.udp_send, keys.udp_recv]


def test_same_inputs_give_same_keys() -> None:
    first, again = both_sides()[0], both_sides()[0]
    assert all_keys(first) == all_keys(again)
    assert first.local_proof == again.local_proof


def test_direction_and_channel_keys_all_differ() -> None:
    a, _ = both_sides()
    keys = all_keys(a) + [a.local_proof]
    assert len(set(keys)) == 5
    assert all(len(k) == 32 for k in keys)


def test_both_ends_derive_mirrored_keys() -> None:
    a, b = both_sides()
    assert a.tcp_send == b.tcp_recv and a.tcp_recv == b.tcp_send
    assert a.udp_send == b.udp_recv and a.udp_recv == b.udp_send


def test_mirrored_keys_open_each_others_traffic() -> None:
    a, b = both_sides()
    assert b.datagram_opener().open(a.datagram_sealer().seal(b"frame")) == b"frame"
    assert a.stream_opener().feed(b.stream_sealer().seal(b"gossip")) == [b"gossip"]
    with pytest.raises(ForgedMessage):  # a sealer's own opener is the wrong direction
        a.datagram_opener().open(a.datagram_sealer().seal(b"frame"))


def test_different_password_gives_different_keys() -> None:
    a, _ = both_sides()
    other = derive_session_keys(password("WeAvE"), A_PRIV, Role.INITIATOR, A, B)
    assert not set(all_keys(a)) & set(all_keys(other))


@pytest.mark.parametrize(
    "change",
    [
        {"public_key": key_pair(3)[1]},
        {"name": "cc:cc:cc:cc:cc:03"},
        {"uid": 112},
        {"connection_id": 8},
    ],
)
def test_keys_are_bound_to_every_transcript_field(change: dict[str, object]) -> None:
    a, _ = both_sides()
    changed = derive_session_keys(password(), A_PRIV, Role.INITIATOR, A, replace(B, **change))
    assert not set(all_keys(a)) & set(all_keys(changed))
    assert a.local_proof != changed.local_proof


def test_swapped_roles_give_different_keys() -> None:
    a, _ = both_sides()
    swapped = derive_session_keys(password(), A_PRIV, Role.RESPONDER, A, B)
    assert not set(all_keys(a)) & set(all_keys(swapped))


def test_password_proof_succeeds_with_same_password() -> None:
    a, b = both_sides()
    b.verify_remote_proof(a.local_proof)  # initiator proves first
    a.verify_remote_proof(b.local_proof)


def test_password_proof_fails_with_different_password() -> None:
    a, b = both_sides(password("wEaVe"), password("guess"))
    with pytest.raises(PasswordMismatch, match="password mismatch"):
        b.verify_remote_proof(a.local_proof)
    with pytest.raises(PasswordMismatch):
        a.verify_remote_proof(b.local_proof)


@pytest.mark.parametrize("proof", [b"", b"x" * 32, "not bytes", None, 42])
def test_malformed_or_wrong_proof_is_a_mismatch_not_a_crash(proof: object) -> None:
    _, b = both_sides()
    with pytest.raises(PasswordMismatch):
        b.verify_remote_proof(proof)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [{"uid": -1}, {"uid": "1"}, {"connection_id": 2**300}, {"name": ""}, {"name": b"raw"}],
)
def test_malformed_remote_hello_fields_are_a_handshake_error(change: dict[str, object]) -> None:
    with pytest.raises(HandshakeError):
        derive_session_keys(password(), A_PRIV, Role.INITIATOR, A, replace(B, **change))


def test_reflected_proof_does_not_verify() -> None:
    a, b = both_sides()
    with pytest.raises(PasswordMismatch):
        a.verify_remote_proof(a.local_proof)
    with pytest.raises(PasswordMismatch):
        b.verify_remote_proof(b.local_proof)


def test_key_exchange_end_to_end_with_fresh_key_pairs() -> None:
    pw = password()
    dialer, listener = KeyExchange(pw), KeyExchange(pw)
    a_hello = replace(A, public_key=dialer.public_key)
    b_hello = replace(B, public_key=listener.public_key)
    a = dialer.complete(Role.INITIATOR, a_hello, b_hello)
    b = listener.complete(Role.RESPONDER, b_hello, a_hello)
    b.verify_remote_proof(a.local_proof)
    a.verify_remote_proof(b.local_proof)
    assert a.udp_send == b.udp_recv


def test_fresh_exchange_never_repeats_keys_so_a_restart_cannot_reuse_nonces() -> None:
    """Same peers, same password, same connection fields: a re-run (as after a crypto or gossip
    actor restart) must still give new keys, or counters restarting at 0 would reuse nonces."""
    pw = password()
    seen: set[bytes] = set()
    for _ in range(20):
        dialer, listener = KeyExchange(pw), KeyExchange(pw)
        keys = dialer.complete(
            Role.INITIATOR,
            replace(A, public_key=dialer.public_key),
            replace(B, public_key=listener.public_key),
        )
        for key in all_keys(keys):
            assert key not in seen
            seen.add(key)


def test_key_exchange_is_single_use() -> None:
    pw = password()
    exchange = KeyExchange(pw)
    local = replace(A, public_key=exchange.public_key)
    exchange.complete(Role.INITIATOR, local, B)
    with pytest.raises(RuntimeError):
        exchange.complete(Role.INITIATOR, local, B)


def test_key_exchange_checks_local_party_carries_its_public_key() -> None:
    with pytest.raises(ValueError):
        KeyExchange(password()).complete(Role.INITIATOR, A, B)


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_malformed_remote_public_key_is_refused(bad: bytes) -> None:
    with pytest.raises(HandshakeError):
        derive_session_keys(password(), A_PRIV, Role.INITIATOR, A, replace(B, public_key=bad))


@pytest.mark.parametrize("weak", [bytes(32), (1).to_bytes(32, "little")])
def test_low_order_remote_public_key_is_refused(weak: bytes) -> None:
    with pytest.raises(HandshakeError):
        derive_session_keys(password(), A_PRIV, Role.INITIATOR, A, replace(B, public_key=weak))


def test_reflected_public_key_is_refused() -> None:
    with pytest.raises(HandshakeError):
        derive_session_keys(password(), A_PRIV, Role.INITIATOR, A, replace(B, public_key=A_PUB))


def test_password_is_never_shown() -> None:
    pw = password("wEaVe-secret")
    for text in (repr(pw), str(pw), f"{pw}", repr(both_sides()[0]), repr(KeyExchange(pw))):
        assert "wEaVe" not in text
        assert "redacted" in text or "ephemeral" in text
    assert b"wEaVe" not in pickle.dumps(pw)  # only the stretched value crosses to an actor
    assert b"wEaVe" not in pw.derived_secret()


def test_password_survives_transfer_as_its_derived_value() -> None:
    pw = password()
    copy = Password.from_derived(pw.derived_secret())
    a = derive_session_keys(pw, A_PRIV, Role.INITIATOR, A, B)
    b = derive_session_keys(copy, B_PRIV, Role.RESPONDER, B, A)
    b.verify_remote_proof(a.local_proof)
    with pytest.raises(ValueError):
        Password.from_derived(b"short")


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError):
        Password("", **FAST)


def test_default_stretching_is_argon2id_interactive() -> None:
    """The protocol's stretching parameters; peers with different ones could never agree."""
    default = Password("wEaVe")
    expected = argon2id.kdf(
        32,
        b"wEaVe",
        b"weavenet/pw/v1\x00\x00",
        opslimit=argon2id.OPSLIMIT_INTERACTIVE,
        memlimit=argon2id.MEMLIMIT_INTERACTIVE,
    )
    assert default.derived_secret() == expected
    assert default.derived_secret() != password("wEaVe").derived_secret()


def test_rekeyed_udp_keys_are_mirrored_fresh_and_differ_per_salt() -> None:
    a, b = both_sides()
    salt = bytes(range(32))
    a_send, a_recv = rekeyed_udp_keys(a.udp_send, a.udp_recv, salt)
    b_send, b_recv = rekeyed_udp_keys(b.udp_send, b.udp_recv, salt)
    assert (a_send, a_recv) == (b_recv, b_send)
    assert {a_send, a_recv}.isdisjoint(all_keys(a))
    assert rekeyed_udp_keys(a.udp_send, a.udp_recv, bytes(32))[0] != a_send
    assert DatagramOpener(b_recv).open(DatagramSealer(a_send).seal(b"frame")) == b"frame"
    with pytest.raises(ValueError):
        rekeyed_udp_keys(a.udp_send, a.udp_recv, b"short")
