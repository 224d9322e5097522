"""Sleeve control datagrams bound to the TCP connection: keys, tags, replay window, paths."""

from __future__ import annotations

import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.public import PrivateKey

from weavenet.crypto.keys import HandshakeParty, Password, Role, derive_session_keys
from weavenet.dataplane.control_auth import (
    CONTROL_FORGED,
    CONTROL_NO_KEY,
    CONTROL_REPLAYED,
    ControlAuth,
    ControlKeys,
    connection_keys,
    decode_keys,
    encode_keys,
)
from weavenet.dataplane.path import Path, reconcile
from weavenet.dataplane.sleeve import (
    CONTROL_LEN,
    HEARTBEAT,
    HEARTBEAT_ACK,
    PMTU_ACK,
    SleeveError,
    build_control,
    peer_to_wire,
    unpack_control,
)

A, B = peer_to_wire("02:00:00:00:00:0a"), peer_to_wire("02:00:00:00:00:0b")
ADDR, ATTACKER = ("192.0.2.2", 6783), ("192.0.2.66", 6783)


def clear_pair(connection_id: int = 0x1234_5678_9ABC_DEF0) -> tuple[ControlKeys, ControlKeys]:
    """Both ends' keys of one connection without a password: A's, then B's."""
    return connection_keys(connection_id, None), connection_keys(connection_id, None)


def sealed_pair() -> tuple[ControlKeys, ControlKeys]:
    """Both ends' keys of one connection with a password (A dialled B)."""
    pw = Password("wEaVe", opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
    privs = [PrivateKey(bytes([n]) * 32) for n in (1, 2)]
    a = HandshakeParty("02:00:00:00:00:0a", 1, 7, bytes(privs[0].public_key))
    b = HandshakeParty("02:00:00:00:00:0b", 2, 9, bytes(privs[1].public_key))
    ka = derive_session_keys(pw, bytes(privs[0]), Role.INITIATOR, a, b)
    kb = derive_session_keys(pw, bytes(privs[1]), Role.RESPONDER, b, a)
    return connection_keys(7 ^ 9, ka), connection_keys(7 ^ 9, kb)


def heartbeat(key: bytes, seq: int, *, kind: int = HEARTBEAT, sender: int = B, token: int = 5,
              value: int = 0):
    return unpack_control(build_control(kind, sender=sender, token=token, key=key,
                                        value=value, seq=seq))


@pytest.mark.parametrize("pair", [clear_pair, sealed_pair])
def test_what_one_end_tags_the_other_accepts_once(pair) -> None:
    ka, kb = pair()
    assert ka.send == kb.recv and ka.recv == kb.send
    auth = ControlAuth(ka)  # A's view of B
    assert auth.verify(heartbeat(kb.send, 10)) is None
    assert auth.verify(heartbeat(kb.send, 10)) == CONTROL_REPLAYED  # the same datagram again
    assert auth.verify(heartbeat(kb.send, 8)) is None  # reordered by the underlay: still fine
    assert auth.verify(heartbeat(kb.send, 11, kind=HEARTBEAT_ACK)) is None


def test_with_a_password_each_direction_has_its_own_key() -> None:
    ka, kb = sealed_pair()
    assert ka.send != ka.recv
    # A's own heartbeat reflected back at A does not pass for B's
    assert ControlAuth(ka).verify(heartbeat(ka.send, 1)) == CONTROL_FORGED


@pytest.mark.parametrize("pair", [clear_pair, sealed_pair])
def test_a_datagram_merely_naming_the_peer_is_forged(pair) -> None:
    ka, _ = pair()
    auth = ControlAuth(ka)
    for key in (bytes(32), connection_keys(0x42, None).send):  # no key; another connection's
        assert auth.verify(heartbeat(key, 1)) == CONTROL_FORGED


@pytest.mark.parametrize("field", ["kind", "sender", "token", "value", "seq"])
def test_every_field_is_covered_by_the_tag(field: str) -> None:
    ka, kb = clear_pair()
    genuine = heartbeat(kb.send, 3, kind=PMTU_ACK, value=1400)
    changed = genuine._replace(**{field: {"kind": HEARTBEAT_ACK, "sender": A, "token": 6,
                                          "value": 60001, "seq": 4}[field]})
    assert ControlAuth(ka).verify(changed) == CONTROL_FORGED


def test_forged_datagrams_do_not_move_the_replay_window() -> None:
    ka, kb = clear_pair()
    auth = ControlAuth(ka)
    assert auth.verify(heartbeat(bytes(32), 2**64 - 1)) == CONTROL_FORGED
    assert auth.verify(heartbeat(kb.send, 1)) is None  # not "too old" after the forgery


def test_a_new_connection_gives_new_keys_and_the_old_ones_stop_working() -> None:
    old, new = connection_keys(1, None), connection_keys(2, None)
    assert old != new
    assert ControlAuth(new).verify(heartbeat(old.send, 1)) == CONTROL_FORGED


def test_the_tag_makes_a_control_datagram_longer_and_a_truncated_one_is_malformed() -> None:
    data = build_control(HEARTBEAT, sender=B, token=1, key=bytes(32))
    assert len(data) == CONTROL_LEN
    with pytest.raises(SleeveError):
        unpack_control(data[:-1])


def test_keys_travel_as_hex_in_the_routes_event_and_bad_ones_are_none() -> None:
    ka, _ = sealed_pair()
    assert decode_keys(encode_keys(ka)) == ka
    assert "send" not in repr(ka) and ka.send.hex() not in repr(ka)  # never logged
    for bad in (None, "ab", ["ab", "cd"], [ka.send.hex()], ["zz" * 32, "00" * 32], 5,
                {"send": ka.send.hex()}):
        assert decode_keys(bad) is None


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.text(), max_size=3),
                 st.lists(st.binary(), max_size=3)))
def test_decode_keys_never_raises(value: object) -> None:
    decode_keys(value)


def test_a_path_without_keys_accepts_nothing_and_sends_nothing() -> None:
    path = Path("02:00:00:00:00:0b", B, ADDR, 0.0)
    assert path.send_key is None
    assert path.verify(heartbeat(bytes(32), 1)) == CONTROL_NO_KEY


def test_only_a_verified_heartbeat_may_move_the_path() -> None:
    """What the forwarder does with each control datagram: verify, and only then heard()."""
    ka, kb = clear_pair()
    path = Path("02:00:00:00:00:0b", B, ADDR, 0.0, ka)
    for seq in range(1, 600):  # an attacker at ~100/s for 6 s, guessing nothing
        spoofed = heartbeat(bytes(32), seq)
        assert path.verify(spoofed) == CONTROL_FORGED
    assert path.addr == ADDR and path.pmtu is None and path.state(1.0) == "probing"
    assert path.verify(heartbeat(kb.send, 1)) is None
    path.heard(ADDR, 1.0, lambda _: 1472)
    assert path.state(1.0) == "ok"


def test_gossip_keys_reach_the_paths_and_only_new_keys_reset_the_window() -> None:
    ka, kb = clear_pair()
    paths: dict[int, Path] = {}
    reconcile(paths, {B: ("02:00:00:00:00:0b", ADDR)}, 0.0, {B: ka})
    assert paths[B].send_key == ka.send and paths[B].verify(heartbeat(kb.send, 5)) is None
    reconcile(paths, {B: ("02:00:00:00:00:0b", ADDR)}, 1.0, {B: ka})  # the periodic backstop
    assert paths[B].verify(heartbeat(kb.send, 5)) == CONTROL_REPLAYED  # window kept
    new_a, new_b = clear_pair(99)  # the peer reconnected: a new TCP connection
    reconcile(paths, {B: ("02:00:00:00:00:0b", ADDR)}, 2.0, {B: new_a})
    assert paths[B].verify(heartbeat(kb.send, 6)) == CONTROL_FORGED
    assert paths[B].verify(heartbeat(new_b.send, 1)) is None
    # a routes event without keys (a restarted gossip, before its new connection) keeps the
    # last ones: still known only to the two ends
    reconcile(paths, {B: ("02:00:00:00:00:0b", ADDR)}, 3.0, {})
    assert paths[B].send_key == new_a.send and paths[B].verify(heartbeat(new_b.send, 2)) is None
    assert paths[B].verify(heartbeat(bytes(32), 3)) == CONTROL_FORGED


def test_control_keys_are_libsodiums_keyed_blake2b() -> None:
    """Derived by the interpreter's BLAKE2b, they must stay byte for byte what libsodium
    (through PyNaCl) derives, as earlier versions did: peers of both must agree."""
    from nacl.encoding import RawEncoder
    from nacl.hash import blake2b

    from weavenet.dataplane.control_auth import connection_keys

    keys = connection_keys(0x0123456789ABCDEF, None)
    want = blake2b(b"clear", digest_size=32, key=(0x0123456789ABCDEF).to_bytes(8, "big"),
                   person=b"weavenet-ctlkey", encoder=RawEncoder)
    assert keys.send == keys.recv == want
