"""One peer connection's protocol state, driven through byte buffers and a fake clock."""

from __future__ import annotations

import pytest

from weavenet.crypto.keys import Password
from weavenet.mesh.connection import (
    CONNECT_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    LINGER,
    LINGER_PATH_DOWN,
    LINGER_TIMEOUT,
    MAX_OUT_BUFFER,
    REMOTE_RESTARTED,
    SILENCE_TIMEOUT,
    PeerConnection,
    Phase,
    new_handshake,
)
from weavenet.mesh.handshake import (
    DUPLICATE_CONNECTION,
    PASSWORD_MISMATCH,
    Accepted,
    HandshakeConfig,
    Refused,
)
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.topology import PeerRecord
from weavenet.mesh.wire import (
    MAX_HANDSHAKE_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE,
    Decoder,
    Goodbye,
    Heartbeat,
    OversizedMessage,
    ProtocolHeader,
    TopologyUpdate,
    encode_body,
    encode_header,
)

ALICE = Peer(PeerName("02:00:00:00:00:01"), "alice", 11)
BOB = Peer(PeerName("02:00:00:00:00:02"), "bob", 22)
PW = Password.from_derived(b"p" * 32)  # skips Argon2id, which would only slow the tests down
T0 = 1000.0


def connection(me: Peer, *, outbound: bool, password: Password | None = None,
               conn_id: int = 7, now: float = T0) -> PeerConnection:
    handshake, decoder = new_handshake(HandshakeConfig(me, encrypt=password is not None),
                                       password, outbound=outbound, conn_id=conn_id)
    address = "198.18.0.2:6783" if outbound else "198.18.0.1:40000"
    return PeerConnection(outbound, address, address if outbound else None, handshake,
                          deadline=now + HANDSHAKE_TIMEOUT, decoder=decoder, last_rx=now)


def take(conn: PeerConnection) -> bytes:
    """Everything queued, as if the socket took it all."""
    data = bytes(conn.out)
    conn.sent(len(data))
    return data


def handshake(a: PeerConnection, b: PeerConnection,
              now: float = T0) -> dict[str, Accepted | Refused | None]:
    """Run both handshakes to their outcome through byte buffers, as the actor does."""
    outcome: dict[str, Accepted | Refused | None] = {"a": None, "b": None}
    conns = {"a": a, "b": b}
    for conn in conns.values():
        assert conn.queue(conn.start_handshake(now))
    for _ in range(10):
        for me, other in (("a", "b"), ("b", "a")):
            for item in conns[me].received(take(conns[other]), now):
                if conns[me].established or outcome[me] is not None:
                    continue
                step = conns[me].handshake.receive(item)
                conns[me].queue(step.send)
                if isinstance(step.outcome, Accepted):
                    conns[me].accept(step.outcome)
                    conns[me].establish(now, None)
                outcome[me] = step.outcome or outcome[me]
    return outcome


def test_a_clear_pair_handshakes_and_then_carries_messages() -> None:
    a, b = connection(ALICE, outbound=True), connection(BOB, outbound=False)
    outcome = handshake(a, b)
    assert isinstance(outcome["a"], Accepted) and isinstance(outcome["b"], Accepted)
    assert a.remote == BOB and b.remote == ALICE and a.connection_id == b.connection_id
    assert a.sealer is None and b.sealer is None
    a.queue(a.framed(a.heartbeat()))
    a.queue(a.framed(a.heartbeat()))
    assert list(b.received(take(a), T0 + 1)) == [Heartbeat(1), Heartbeat(2)]
    assert b.last_rx == T0 + 1


def test_before_the_handshake_only_small_messages_are_accepted() -> None:
    b = connection(BOB, outbound=False)
    b.queue(b.start_handshake(T0))
    with pytest.raises(OversizedMessage):
        list(b.received(encode_header() + (MAX_MESSAGE_SIZE).to_bytes(4, "big"), T0))


@pytest.mark.parametrize("password", [None, PW])
def test_a_big_update_right_behind_the_hello_is_taken_once_the_handshake_accepts(
        password: Password | None) -> None:
    a = connection(ALICE, outbound=True, password=password)
    b = connection(BOB, outbound=False, password=password)
    a.queue(a.start_handshake(T0))
    b.queue(b.start_handshake(T0))
    big = TopologyUpdate(tuple(PeerRecord(PeerName(f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"),
                                          "n" * 200, 1, 1) for i in range(3, 103)))
    assert len(encode_body(big)) > MAX_HANDSHAKE_MESSAGE_SIZE
    got: list[object] = []
    # b gets a's hello and the update in one read (without a password): the update's length
    # must be checked only once b's handshake has accepted a
    for _ in range(6):
        for me, other in ((b, a), (a, b)):
            for item in me.received(take(other), T0):
                if me.remote is not None:
                    got.append(item)
                    continue
                step = me.handshake.receive(item)
                me.queue(step.send)
                if isinstance(step.outcome, Accepted):
                    me.accept(step.outcome)
                    if me is a:
                        me.queue(me.framed(encode_body(big)))
    assert got == [big]


def test_an_encrypted_pair_seals_the_stream_after_the_proofs() -> None:
    a = connection(ALICE, outbound=True, password=PW)
    b = connection(BOB, outbound=False, password=PW)
    outcome = handshake(a, b)
    assert isinstance(outcome["a"], Accepted) and isinstance(outcome["b"], Accepted)
    assert a.sealer is not None and b.sealer is not None
    body = encode_body(TopologyUpdate(()))
    sealed = a.framed(body)
    assert body not in sealed
    a.queue(sealed)
    assert list(b.received(take(a), T0)) == [TopologyUpdate(())]


def test_sealed_bytes_right_behind_the_proof_are_decoded_once_the_handshake_opens_them() -> None:
    a = connection(ALICE, outbound=True, password=PW)
    b = connection(BOB, outbound=False, password=PW)
    # run the handshake by hand until the responder's proof is the last clear message
    a.queue(a.start_handshake(T0))
    b.queue(b.start_handshake(T0))
    for me, other in ((b, a), (a, b), (b, a)):
        for item in me.received(take(other), T0):
            step = me.handshake.receive(item)
            me.queue(step.send)
            if isinstance(step.outcome, Accepted):
                me.accept(step.outcome)
                me.establish(T0, None)
    assert b.established and not a.established
    # the responder's proof and a sealed heartbeat arrive in one read
    b.queue(b.framed(b.heartbeat()))
    seen = []
    for item in a.received(take(b), T0):
        seen.append(type(item).__name__)
        if not a.established:
            step = a.handshake.receive(item)
            assert isinstance(step.outcome, Accepted)
            a.accept(step.outcome)
            a.establish(T0, None)
    assert seen == ["Proof", "Heartbeat"]


def test_a_wrong_password_is_refused() -> None:
    a = connection(ALICE, outbound=True, password=PW)
    b = connection(BOB, outbound=False, password=Password.from_derived(b"q" * 32))
    outcome = handshake(a, b)
    assert isinstance(outcome["b"], Refused) and outcome["b"].reason == PASSWORD_MISMATCH


def test_deadlines_cover_the_connect_then_the_handshake_but_not_an_established_link() -> None:
    conn = connection(ALICE, outbound=True)
    conn.connecting(T0)
    assert conn.phase is Phase.CONNECTING
    assert conn.expired(T0 + CONNECT_TIMEOUT) is None
    assert conn.expired(T0 + CONNECT_TIMEOUT + 0.1) == "connect timed out"
    header = conn.start_handshake(T0 + 1)
    assert header == encode_header() and conn.phase is Phase.HANDSHAKE
    assert conn.expired(T0 + 1 + HANDSHAKE_TIMEOUT + 0.1) == "handshake timed out"
    conn.establish(T0 + 2, None)
    assert conn.expired(T0 + 1000) is None


def test_silence_is_measured_from_the_last_bytes_received() -> None:
    conn = connection(ALICE, outbound=True)
    conn.establish(T0, None)
    assert not conn.silent(T0 + SILENCE_TIMEOUT)
    assert conn.silent(T0 + SILENCE_TIMEOUT + 0.1)
    list(conn.received(b"", T0 + SILENCE_TIMEOUT))
    assert not conn.silent(T0 + SILENCE_TIMEOUT + 0.1)


def test_the_out_buffer_overflows_when_the_remote_stops_reading() -> None:
    conn = connection(ALICE, outbound=True)
    assert conn.queue(b"x" * MAX_OUT_BUFFER)
    assert not conn.queue(b"x")
    conn.sent(MAX_OUT_BUFFER)
    assert conn.out == bytearray(b"x")


def test_a_goodbye_follows_what_is_still_buffered() -> None:
    a, b = connection(ALICE, outbound=True), connection(BOB, outbound=False)
    handshake(a, b)
    a.queue(a.framed(a.heartbeat()))
    decoder = Decoder()
    decoder.feed(encode_header())
    assert decoder.feed(a.goodbye("peer shutting down")) == [
        Heartbeat(1), Goodbye("peer shutting down")]


def test_received_stops_at_the_item_that_closed_the_connection() -> None:
    conn = connection(ALICE, outbound=False)
    stream = encode_header() + b"".join(conn.framed(encode_body(Heartbeat(i))) for i in range(3))
    seen = []
    for item in conn.received(stream, T0):
        seen.append(item)
        if isinstance(item, Heartbeat):
            assert conn.close()
    assert seen == [ProtocolHeader(1, 1), Heartbeat(0)]
    assert not conn.close()


@pytest.mark.parametrize("old_outbound", [True, False])
def test_of_two_links_to_one_incarnation_both_ends_drop_the_same(old_outbound: bool) -> None:
    a_old = connection(ALICE, outbound=old_outbound, conn_id=1)
    b_old = connection(BOB, outbound=not old_outbound, conn_id=2)
    a_new = connection(ALICE, outbound=not old_outbound, conn_id=3)
    b_new = connection(BOB, outbound=old_outbound, conn_id=4)
    handshake(a_old, b_old)
    handshake(a_new, b_new)
    assert a_new.loses_to(a_old, ALICE) == b_new.loses_to(b_old, BOB)
    # the one the lower name (alice) dialled wins
    assert a_new.loses_to(a_old, ALICE) == old_outbound
    assert a_new.replaces_reason(a_old) == DUPLICATE_CONNECTION


def test_a_link_from_the_remotes_previous_incarnation_is_replaced_not_preferred() -> None:
    a_old, b_old = connection(ALICE, outbound=True), connection(BOB, outbound=False)
    handshake(a_old, b_old)
    reborn = Peer(BOB.name, BOB.nickname, BOB.uid + 1)
    a_new, b_new = connection(ALICE, outbound=False), connection(reborn, outbound=True)
    handshake(a_new, b_new)
    assert not a_new.loses_to(a_old, ALICE) and not a_new.loses_to(None, ALICE)
    assert a_new.replaces_reason(a_old) == REMOTE_RESTARTED


def test_status_row_says_what_the_connection_is_doing() -> None:
    a, b = connection(ALICE, outbound=True), connection(BOB, outbound=False)
    a.connecting(T0)
    assert (a.status_row()["state"], a.status_row()["info"]) == ("connecting", "connecting")
    handshake(a, b)
    a.path_seen("ok")
    b.path_seen("ok")
    row = a.status_row()
    assert row == {"address": "198.18.0.2:6783", "peer": str(BOB.name), "nickname": "bob",
                   "state": "established", "info": "outbound", "encrypted": False,
                   "direction": "outbound"}
    assert b.status_row()["info"] == "inbound" and b.host == "198.18.0.1"
    assert b.status_row()["direction"] == "inbound"


def test_only_the_forwarders_verdicts_change_whether_a_connection_carries_traffic() -> None:
    conn = connection(ALICE, outbound=True)
    conn.establish(T0, None)
    conn.remote = BOB
    assert conn.path_seen(None) is None and conn.path_seen("probing") is None
    row = conn.status_row()
    assert row["state"] == "connected" and "waiting for UDP heartbeats" in row["info"]
    assert conn.path_seen("ok") is True and conn.data_path
    assert conn.status_row()["state"] == "established"
    assert conn.path_seen("probing") is None and conn.data_path  # a restarted forwarder
    assert conn.path_seen("unreachable") is False and not conn.data_path
    row = conn.status_row()
    assert row["state"] == "connected" and "UDP path down" in row["info"]
    assert row["reason"].startswith("UDP path down")
    assert conn.path_seen("unreachable") is None  # no change, nothing to gossip


@pytest.mark.parametrize("password", [None, PW])
def test_both_ends_of_a_connection_get_mirrored_control_keys_and_the_next_connection_others(
        password: Password | None) -> None:
    a = connection(ALICE, outbound=True, password=password, conn_id=7)
    b = connection(BOB, outbound=False, password=password, conn_id=9)
    handshake(a, b)
    assert a.control_keys is not None and b.control_keys is not None
    assert (a.control_keys.send, a.control_keys.recv) == (b.control_keys.recv,
                                                          b.control_keys.send)
    c = connection(ALICE, outbound=True, password=password, conn_id=8)
    d = connection(BOB, outbound=False, password=password, conn_id=9)
    handshake(c, d)
    assert c.control_keys is not None and c.control_keys.send != a.control_keys.send


def established(path: str | None = "ok") -> PeerConnection:
    conn = connection(ALICE, outbound=True)
    conn.establish(T0, None)
    conn.remote = BOB
    conn.path_seen(path)
    return conn


def test_a_broken_link_whose_udp_path_works_lingers_until_the_peer_is_back_or_time_is_up() -> None:
    conn = established()
    assert conn.linger(T0) and conn.lingering
    assert conn.linger_over(T0 + LINGER - 0.1) is None
    row = conn.status_row()
    assert row["state"] == "connected" and "waiting for the peer to reconnect" in row["info"]
    assert conn.linger_over(T0 + LINGER) == LINGER_TIMEOUT


def test_a_lingering_link_is_lost_as_soon_as_its_udp_path_goes_down() -> None:
    conn = established()
    conn.linger(T0)
    conn.path_seen("unreachable")
    assert conn.linger_over(T0 + 0.1) == LINGER_PATH_DOWN


@pytest.mark.parametrize("path", [None, "unreachable"])
def test_a_broken_link_without_a_working_udp_path_is_lost_at_once(path: str | None) -> None:
    conn = established(path)
    assert not conn.linger(T0) and not conn.lingering and conn.linger_over(T0 + 100) is None


def test_rekeys_that_cross_on_the_wire_leave_both_ends_with_mirrored_fresh_keys() -> None:
    a = connection(ALICE, outbound=True, password=PW)
    b = connection(BOB, outbound=False, password=PW)
    handshake(a, b)
    assert a.udp_keys is not None and b.udp_keys is not None
    first = a.udp_keys
    salt_a, salt_b = b"a" * 32, b"b" * 32
    a.rekey(salt_a)  # both crypto actors restarted at once: each side sends a salt
    b.rekey(salt_b)
    a_keys, b_keys = a.rekey(salt_b), b.rekey(salt_a)  # then each gets the other's
    assert a_keys == (b_keys[1], b_keys[0])
    assert not set(a_keys) & set(first)  # no key is used again


def test_a_clear_connection_has_no_keys_to_rekey() -> None:
    a, b = connection(ALICE, outbound=True), connection(BOB, outbound=False)
    handshake(a, b)
    with pytest.raises(ValueError):
        a.rekey(b"a" * 32)


def test_an_inbound_link_whose_peer_cannot_be_dialled_back_is_inbound_only() -> None:
    a, b = connection(ALICE, outbound=True), connection(BOB, outbound=False)
    handshake(a, b)
    b.udp = "198.18.0.1:6783"  # the remote's address with the port it said it listens on
    assert a.dialback_address is None and b.dialback_address == "198.18.0.1:6783"
    b.path_seen("ok")
    assert b.status_row()["info"] == "inbound"  # not known yet
    b.dialback = True
    assert b.status_row()["info"] == "inbound"
    b.dialback = False
    assert b.status_row()["info"] == "inbound-only"
