"""Sorting datagrams from the network: frames to the core, sealed blobs, pieces, control."""

from __future__ import annotations

from typing import Any

from weavenet.dataplane.forwarding import Plan
from weavenet.dataplane.inbound import (
    MALFORMED,
    PLAINTEXT,
    REASSEMBLY_FAILED,
    SEALED,
    UNKNOWN_SENDER,
    Arrivals,
    Inbound,
    reply_to,
)
from weavenet.dataplane.path import Path
from weavenet.dataplane.sealed import SEALED_PREFIX_LEN
from weavenet.dataplane.sleeve import (
    ENCRYPTED,
    FRAG_TEST,
    FRAG_TEST_ACK,
    FRAMES,
    HEARTBEAT,
    HEARTBEAT_ACK,
    OUTER_LEN,
    PMTU_ACK,
    PMTU_PROBE,
    build_control,
    build_outer,
    pack_datagram,
    split_datagram,
    unpack_control,
)

ME, PEER, STRANGER = 0x020000000001, 0x020000000002, 0x020000000009
KEY = bytes(32)  # a control key (see weavenet.dataplane.control_auth)
ADDR = ("192.0.2.2", 6783)
FRAMES_OF_PEER = [bytes(10) + b"frame-%d" % i for i in range(3)]


class Core:
    """Records what reaches the forwarding core (Forwarder.received)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, list[bytes], float]] = []

    def received(self, src: int, dst: int, frames: Any, now: float, plan: Plan) -> Plan:
        self.calls.append((src, dst, [bytes(f) for f in frames], now))
        return plan


def inbound(*, encrypt: bool = False) -> tuple[Inbound, Core, dict[int, Path]]:
    core = Core()
    paths = {PEER: Path("02:00:00:00:00:02", PEER, ADDR, 0.0)}
    ib = Inbound(ME, encrypt=encrypt, received=core.received, paths=paths)
    ib.peers = {ME: "me", PEER: "peer"}
    return ib, core, paths


def clear(sender: int = PEER, frames: list[bytes] = FRAMES_OF_PEER, size: int = 1472) -> bytes:
    return pack_datagram(frames, size, sender=sender, src_peer=sender, dst_peer=ME).datagrams[0]


def sealed(sender: int = PEER) -> bytes:
    return build_outer(FRAMES, ENCRYPTED, sender, 5)[:SEALED_PREFIX_LEN] + b"seq|mac|ciphertext"


def test_clear_frames_from_a_known_peer_reach_the_core() -> None:
    ib, core, _ = inbound()
    out = Arrivals(Plan())
    assert ib.datagram(clear(), ADDR, 1.0, out) == 3
    assert core.calls == [(PEER, ME, FRAMES_OF_PEER, 1.0)]
    assert out.plan.drops == {}


def test_datagrams_from_strangers_or_ourselves_are_dropped() -> None:
    ib, core, _ = inbound()
    out = Arrivals(Plan())
    ib.datagram(clear(STRANGER), ADDR, 0.0, out)
    ib.datagram(clear(ME), ADDR, 0.0, out)
    assert out.plan.drops == {UNKNOWN_SENDER: 2} and core.calls == []


def test_garbage_is_counted_as_malformed() -> None:
    ib, _, _ = inbound()
    out = Arrivals(Plan())
    ib.datagram(b"\x51 too short", ADDR, 0.0, out)
    ib.datagram(clear()[:-2], ADDR, 0.0, out)  # a frame that overruns the datagram
    assert out.plan.drops == {MALFORMED: 2}


def test_sealed_datagrams_queue_for_the_crypto_actor_only_when_we_encrypt() -> None:
    ib, _, _ = inbound(encrypt=True)
    out = Arrivals(Plan())
    ib.datagram(sealed(), ADDR, 0.0, out)
    ib.datagram(sealed(), ADDR, 0.0, out)
    assert [bytes(b) for b in out.sealed[PEER]] == [sealed()[SEALED_PREFIX_LEN:]] * 2
    ib, _, _ = inbound(encrypt=False)
    out = Arrivals(Plan())
    ib.datagram(sealed(), ADDR, 0.0, out)
    assert out.sealed == {} and out.plan.drops == {SEALED: 1}


def test_clear_frames_are_refused_when_we_encrypt() -> None:
    ib, core, _ = inbound(encrypt=True)
    out = Arrivals(Plan())
    assert ib.datagram(clear(), ADDR, 0.0, out) == 0
    assert out.plan.drops == {PLAINTEXT: 1} and core.calls == []


def test_control_messages_are_listed_for_the_actor_with_their_address() -> None:
    ib, _, _ = inbound()
    out = Arrivals(Plan())
    ib.datagram(build_control(HEARTBEAT, sender=PEER, key=KEY, token=7), ADDR, 0.0, out)
    [(msg, addr)] = out.controls
    assert (msg.kind, msg.sender, msg.token, addr) == (HEARTBEAT, PEER, 7, ADDR)


def test_traffic_keeps_the_senders_path_alive() -> None:
    ib, _, paths = inbound()
    paths[PEER].heard(ADDR, 0.0, lambda _: 1472)
    ib.datagram(clear(), ADDR, 3.0, Arrivals(Plan()))
    assert paths[PEER].last_heard == 3.0


def test_pieces_of_a_big_datagram_are_put_back_together_and_dispatched() -> None:
    ib, core, _ = inbound()
    frames = [bytes(10) + bytes([i]) * 1000 for i in range(8)]
    big = clear(frames=frames, size=65507)
    out = Arrivals(Plan())
    pieces = [b"".join(parts[i : i + 2]) for parts in split_datagram(big, 1472, sender=PEER,
                                                                      frag_id=1)
              for i in range(0, len(parts), 2)]
    counts = [ib.datagram(p, ADDR, 0.0, out) for p in pieces]
    assert counts[:-1] == [0] * (len(pieces) - 1) and counts[-1] == 8
    assert core.calls[0][2] == frames


def test_a_reassembled_fragment_is_malformed_and_lost_pieces_are_counted() -> None:
    ib, core, _ = inbound()
    inner = split_datagram(clear(), 100, sender=PEER, frag_id=1)[0][:2]
    nested = b"".join(inner)  # a whole datagram that is itself a fragment
    out = Arrivals(Plan())
    for parts in split_datagram(nested, 60, sender=PEER, frag_id=2):
        for i in range(0, len(parts), 2):
            ib.datagram(b"".join(parts[i : i + 2]), ADDR, 0.0, out)
    assert out.plan.drops == {MALFORMED: 1}
    first = split_datagram(clear(), 60, sender=PEER, frag_id=3)[0]
    ib.datagram(b"".join(first[:2]), ADDR, 0.0, out)  # the rest never arrives
    ib.reassembler.timeout = 0.0
    for parts in split_datagram(clear(), 60, sender=PEER, frag_id=4):
        ib.datagram(b"".join(parts[:2]), ADDR, 5.0, out)
        break
    assert out.plan.drops[REASSEMBLY_FAILED] >= 1 and core.calls == []


def test_pieces_from_strangers_are_dropped() -> None:
    ib, _, _ = inbound()
    out = Arrivals(Plan())
    parts = split_datagram(clear(STRANGER), 60, sender=STRANGER, frag_id=1)[0]
    ib.datagram(b"".join(parts[:2]), ADDR, 0.0, out)
    assert out.plan.drops == {UNKNOWN_SENDER: 1}


def test_opened_bodies_reach_the_core_and_failures_are_skipped() -> None:
    ib, core, paths = inbound(encrypt=True)
    paths[PEER].heard(ADDR, 0.0, lambda _: 1472)
    body = clear()[OUTER_LEN:]
    plan = Plan()
    assert ib.opened([body, b"", b"\x00" * 3], PEER, 2.0, plan) == 3
    assert core.calls == [(PEER, ME, FRAMES_OF_PEER, 2.0)]
    assert plan.drops == {MALFORMED: 1} and paths[PEER].last_heard == 2.0


def test_heartbeats_probes_and_frag_tests_are_answered_acks_are_not() -> None:
    def control(kind: int, size: int = 0) -> Any:
        return unpack_control(build_control(kind, sender=PEER, key=KEY, token=1, value=size,
                                            size=size))

    assert reply_to(control(HEARTBEAT)) == (HEARTBEAT_ACK, 0)
    assert reply_to(control(PMTU_PROBE, 1400)) == (PMTU_ACK, 1400)
    assert reply_to(control(FRAG_TEST, 60001)) == (FRAG_TEST_ACK, 60001)
    assert reply_to(control(HEARTBEAT_ACK)) is None
    assert reply_to(control(PMTU_ACK, 1400)) is None
