"""The handshake: version negotiation, identity checks, encryption agreement, duplicates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from weavenet.mesh.handshake import (
    CONNECTION_TO_SELF,
    LOCAL_REQUIRES_ENCRYPTION,
    NAME_COLLISION,
    NO_COMMON_VERSION,
    REMOTE_REQUIRES_ENCRYPTION,
    Accepted,
    ConnectionSide,
    Handshake,
    HandshakeConfig,
    Refused,
    negotiate_version,
    prefer,
)
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.wire import Decoder, Goodbye, Heartbeat, encode, encode_header

ALICE = Peer(PeerName("02:00:00:00:00:01"), "alice", 11)
BOB = Peer(PeerName("02:00:00:00:00:02"), "bob", 22)
KEY_A, KEY_B = b"a" * 32, b"b" * 32


def run(
    a: Handshake, b: Handshake, limit: int = 10
) -> tuple[Accepted | Refused | None, Accepted | Refused | None]:
    """Pump bytes between two handshakes (as two sockets would) until both decide."""
    dec_a, dec_b = Decoder(), Decoder()
    to_b, to_a = a.start(), b.start()
    outcomes: dict[str, Accepted | Refused | None] = {"a": None, "b": None}
    for _ in range(limit):
        next_a, next_b = b"", b""
        for side, hs, dec, data in (("b", b, dec_b, to_b), ("a", a, dec_a, to_a)):
            for item in dec.feed(data):
                if hs.done:
                    break
                step = hs.receive(item)
                if side == "b":
                    next_a += step.send
                else:
                    next_b += step.send
                outcomes[side] = step.outcome or outcomes[side]
        to_a, to_b = next_a, next_b
        if a.done and b.done:
            break
    return outcomes["a"], outcomes["b"]


def hs(peer: Peer, *, outbound: bool, conn_id: int = 1, **cfg: object) -> Handshake:
    return Handshake(HandshakeConfig(peer, **cfg), outbound=outbound, conn_id=conn_id)  # type: ignore[arg-type]


def test_two_peers_accept_each_other_and_agree_on_the_connection_id() -> None:
    a, b = run(
        hs(ALICE, outbound=True, conn_id=5), hs(BOB, outbound=False, conn_id=9, udp_port=7000)
    )
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    assert a.remote == BOB and b.remote == ALICE
    assert a.connection_id == b.connection_id
    assert a.outbound and not b.outbound
    assert a.remote_udp_port == 7000 and b.remote_udp_port == 6783
    assert a.version == b.version == 1


def test_the_highest_common_version_is_chosen() -> None:
    a, b = run(hs(ALICE, outbound=True, max_version=3), hs(BOB, outbound=False, max_version=2))
    assert isinstance(a, Accepted) and a.version == 2
    assert isinstance(b, Accepted) and b.version == 2


@given(st.integers(1, 9), st.integers(0, 5), st.integers(1, 9), st.integers(0, 5))
def test_negotiated_version_is_in_both_ranges_and_maximal(
    lo1: int, w1: int, lo2: int, w2: int
) -> None:
    hi1, hi2 = lo1 + w1, lo2 + w2
    v = negotiate_version(lo1, hi1, lo2, hi2)
    common = set(range(lo1, hi1 + 1)) & set(range(lo2, hi2 + 1))
    assert v == (max(common) if common else None)


def test_without_a_common_version_both_refuse_permanently_and_say_why() -> None:
    old = hs(ALICE, outbound=True, min_version=1, max_version=1)
    new = hs(BOB, outbound=False, min_version=2, max_version=3)
    new.start()
    step = new.receive(Decoder().feed(old.start())[0])
    assert isinstance(step.outcome, Refused) and step.outcome.permanent
    assert NO_COMMON_VERSION in step.outcome.reason
    sent = Decoder().feed(encode_header() + step.send)[1]
    assert isinstance(sent, Goodbye) and NO_COMMON_VERSION in sent.reason


def test_dialling_our_own_address_is_detected_as_a_connection_to_self() -> None:
    a, b = run(hs(ALICE, outbound=True), hs(ALICE, outbound=False))
    assert a == Refused(CONNECTION_TO_SELF, permanent=True, by_remote=False)
    assert isinstance(b, Refused) and b.reason == CONNECTION_TO_SELF


def test_another_host_using_our_name_is_a_name_collision() -> None:
    impostor = Peer(ALICE.name, "mallory", 99)
    a, b = run(hs(ALICE, outbound=True), hs(impostor, outbound=False))
    assert isinstance(a, Refused) and a.reason == NAME_COLLISION and a.permanent
    assert isinstance(b, Refused) and b.reason == NAME_COLLISION


def test_encryption_mismatch_is_refused_on_both_ends_with_each_sides_reason() -> None:
    plain, secret = run(
        hs(ALICE, outbound=True), hs(BOB, outbound=False, encrypt=True, public_key=KEY_B)
    )
    assert isinstance(plain, Refused) and plain.reason == REMOTE_REQUIRES_ENCRYPTION
    assert isinstance(secret, Refused) and secret.reason == LOCAL_REQUIRES_ENCRYPTION
    assert plain.permanent and secret.permanent


def test_encrypting_peers_learn_each_others_ephemeral_keys() -> None:
    a, b = run(
        hs(ALICE, outbound=True, encrypt=True, public_key=KEY_A),
        hs(BOB, outbound=False, encrypt=True, public_key=KEY_B),
    )
    assert isinstance(a, Accepted) and a.remote_public_key == KEY_B
    assert isinstance(b, Accepted) and b.remote_public_key == KEY_A


def test_an_encrypting_config_needs_a_key() -> None:
    with pytest.raises(ValueError):
        hs(ALICE, outbound=True, encrypt=True)


def test_a_message_before_hello_is_refused_but_may_be_retried() -> None:
    h = hs(ALICE, outbound=True)
    h.start()
    h.receive(Decoder().feed(encode_header())[0])
    step = h.receive(Heartbeat())
    assert isinstance(step.outcome, Refused) and not step.outcome.permanent
    assert h.done


def test_a_goodbye_during_the_handshake_ends_it() -> None:
    h = hs(ALICE, outbound=True)
    h.start()
    (item,) = Decoder().feed(encode_header() + encode(Goodbye("shutting down")))[1:]
    step = h.receive(item)
    assert step.outcome == Refused("shutting down", permanent=False, by_remote=True)


# -- duplicate connections -------------------------------------------------------------------------


def test_the_connection_initiated_by_the_lower_name_survives_on_both_ends() -> None:
    # ALICE < BOB. Alice dialled connection 1 (outbound at Alice), Bob dialled connection 2.
    at_alice = prefer(ALICE, BOB, ConnectionSide(True, 1), ConnectionSide(False, 2))
    at_bob = prefer(BOB, ALICE, ConnectionSide(False, 1), ConnectionSide(True, 2))
    assert at_alice == 0 and at_bob == 0


@given(st.booleans(), st.booleans(), st.integers(0, 9), st.integers(0, 9), st.booleans())
def test_both_ends_always_keep_the_same_connection(
    out1: bool, out2: bool, id1: int, id2: int, alice_lower: bool
) -> None:
    lo, hi = (ALICE, BOB) if alice_lower else (BOB, ALICE)
    # Each connection as seen from lo, and the mirror image seen from hi.
    c1, c2 = ConnectionSide(out1, id1), ConnectionSide(out2, id2)
    m1, m2 = ConnectionSide(not out1, id1), ConnectionSide(not out2, id2)
    assert prefer(lo, hi, c1, c2) == prefer(hi, lo, m1, m2)
    assert prefer(lo, hi, c1, c2) != prefer(lo, hi, c2, c1) or (out1, id1) == (out2, id2)
