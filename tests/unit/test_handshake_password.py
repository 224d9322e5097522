"""The handshake with a password: key exchange, proof order, mismatch, and the sealed stream."""

from __future__ import annotations

import pytest

from weavenet.crypto.keys import KeyExchange, Password
from weavenet.mesh.handshake import (
    PASSWORD_MISMATCH,
    Accepted,
    Handshake,
    HandshakeConfig,
    Refused,
)
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.wire import (
    Decoder,
    Goodbye,
    Heartbeat,
    Hello,
    Proof,
    SealedStreamError,
    TopologyUpdate,
    encode,
    encode_body,
    encode_header,
)

ALICE = Peer(PeerName("02:00:00:00:00:01"), "alice", 11)
BOB = Peer(PeerName("02:00:00:00:00:02"), "bob", 22)
# from_derived skips Argon2id, which would only slow the tests down
PW = Password.from_derived(b"p" * 32)
OTHER_PW = Password.from_derived(b"q" * 32)


def side(peer: Peer, password: Password, *, outbound: bool, conn_id: int = 7) -> Handshake:
    kx = KeyExchange(password)
    cfg = HandshakeConfig(peer, encrypt=True, public_key=kx.public_key)
    return Handshake(cfg, outbound=outbound, conn_id=conn_id, exchange=kx)


class Pipe:
    """Two handshakes wired back to back, with every message each one sent recorded."""

    def __init__(self, a: Handshake, b: Handshake) -> None:
        self.hs = {"a": a, "b": b}
        self.dec = {"a": Decoder(pause_after=(Proof,)), "b": Decoder(pause_after=(Proof,))}
        self.sent: dict[str, list[object]] = {"a": [], "b": []}
        self.outcome: dict[str, Accepted | Refused | None] = {"a": None, "b": None}

    def run(self, limit: int = 10) -> tuple[Accepted | Refused | None, Accepted | Refused | None]:
        wire = {"a": self.hs["a"].start(), "b": self.hs["b"].start()}
        for _ in range(limit):
            nxt = {"a": b"", "b": b""}
            for me, other in (("b", "a"), ("a", "b")):
                for item in self.dec[me].feed(wire[other]):
                    self.sent[other].append(item)
                    if self.hs[me].done:
                        continue
                    step = self.hs[me].receive(item)
                    nxt[me] += step.send
                    self.outcome[me] = step.outcome or self.outcome[me]
            wire = nxt
            if not any(wire.values()):
                break
        return self.outcome["a"], self.outcome["b"]


def test_peers_with_the_same_password_accept_each_other_with_mirrored_session_keys() -> None:
    a, b = Pipe(side(ALICE, PW, outbound=True), side(BOB, PW, outbound=False)).run()
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    assert a.keys is not None and b.keys is not None
    assert a.keys.tcp_send == b.keys.tcp_recv and a.keys.tcp_recv == b.keys.tcp_send
    assert a.keys.udp_send == b.keys.udp_recv and a.keys.udp_recv == b.keys.udp_send
    assert a.keys.udp_send != a.keys.udp_recv
    assert a.connection_id == b.connection_id


def test_the_initiator_proves_first_and_the_responder_only_after_checking() -> None:
    pipe = Pipe(side(ALICE, PW, outbound=True), side(BOB, PW, outbound=False))
    pipe.run()
    kinds_a = [type(x).__name__ for x in pipe.sent["a"]]
    kinds_b = [type(x).__name__ for x in pipe.sent["b"]]
    assert kinds_a == ["ProtocolHeader", "Hello", "Proof"]
    assert kinds_b == ["ProtocolHeader", "Hello", "Proof"]


def test_a_wrong_password_is_refused_on_both_sides_and_the_responder_never_proves() -> None:
    pipe = Pipe(side(ALICE, PW, outbound=True), side(BOB, OTHER_PW, outbound=False))
    a, b = pipe.run()
    assert b == Refused(PASSWORD_MISMATCH, permanent=True, by_remote=False)
    assert a == Refused(PASSWORD_MISMATCH, permanent=True, by_remote=True)
    assert not any(isinstance(x, Proof) for x in pipe.sent["b"])
    assert Goodbye(PASSWORD_MISMATCH) in pipe.sent["b"]


def test_a_forged_proof_from_the_responder_is_refused_by_the_initiator() -> None:
    init = side(ALICE, PW, outbound=True)
    resp = side(BOB, PW, outbound=False)
    init.start()
    resp.start()
    dec = Decoder()
    hello_b = dec.feed(resp.start() + resp.receive(dec_header(init)).send)
    step = None
    for item in hello_b:
        step = init.receive(item)
    assert step is not None and step.outcome is None  # sent its proof, awaits the responder's
    out = init.receive(Proof(b"\0" * 32))
    assert isinstance(out.outcome, Refused) and out.outcome.reason == PASSWORD_MISMATCH


def dec_header(hs: Handshake) -> object:
    return Decoder().feed(hs.start())[0]


def test_anything_but_a_proof_after_the_hellos_is_refused() -> None:
    pipe = Pipe(side(ALICE, PW, outbound=True), side(BOB, PW, outbound=False))
    resp = pipe.hs["b"]
    resp.start()
    resp.receive(dec_header(pipe.hs["a"]))
    init = pipe.hs["a"]
    hello = Hello(ALICE.name, ALICE.nickname, ALICE.uid, 7, True, init.config.public_key)
    assert resp.receive(hello).outcome is None
    step = resp.receive(Heartbeat(1))
    assert isinstance(step.outcome, Refused) and not step.outcome.permanent


def test_a_handshake_needs_the_exchange_key_in_its_hello() -> None:
    kx = KeyExchange(PW)
    with pytest.raises(ValueError):
        Handshake(HandshakeConfig(ALICE, encrypt=True, public_key=b"x" * 32),
                  outbound=True, conn_id=1, exchange=kx)


def sealed_pair() -> tuple[Accepted, Accepted]:
    a, b = Pipe(side(ALICE, PW, outbound=True), side(BOB, PW, outbound=False)).run()
    assert isinstance(a, Accepted) and isinstance(b, Accepted)
    return a, b


def test_the_decoder_holds_sealed_bytes_after_the_proof_until_it_has_the_opener() -> None:
    a, b = sealed_pair()
    assert a.keys is not None and b.keys is not None
    sealer = a.keys.stream_sealer()
    # the clear part as a responder reads it, with sealed messages right behind the proof
    dec = Decoder(pause_after=(Proof,))
    stream = bytearray(encode_header())
    stream += encode(Proof(b"\1" * 32))
    stream += sealer.seal(encode_body(Heartbeat(5)))
    stream += sealer.seal(encode_body(TopologyUpdate(())))
    items = dec.feed(bytes(stream))
    assert [type(x).__name__ for x in items] == ["ProtocolHeader", "Proof"]
    assert dec.paused and dec.buffered > 0
    assert dec.feed(b"") == []  # still paused: nothing sealed is parsed as clear
    dec.open_with(b.keys.stream_opener().open)
    assert dec.feed(b"") == [Heartbeat(5), TopologyUpdate(())]


def test_a_replayed_or_tampered_sealed_message_breaks_the_stream() -> None:
    a, b = sealed_pair()
    assert a.keys is not None and b.keys is not None
    sealer = a.keys.stream_sealer()
    first = sealer.seal(encode_body(Heartbeat(1)))
    dec = Decoder()
    dec.feed(encode_header())
    dec.open_with(b.keys.stream_opener().open)
    assert dec.feed(first) == [Heartbeat(1)]
    with pytest.raises(SealedStreamError):
        dec.feed(first)  # the same message again: the counter moved on
    with pytest.raises(SealedStreamError):
        dec.feed(b"")  # broken for good

    tampered = bytearray(sealer.seal(encode_body(Heartbeat(2))))
    tampered[-1] ^= 1
    dec2 = Decoder()
    dec2.feed(encode_header())
    dec2.open_with(b.keys.stream_opener().open)
    with pytest.raises(SealedStreamError):
        dec2.feed(bytes(tampered))
