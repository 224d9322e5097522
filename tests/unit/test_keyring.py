"""The crypto actor's key ring, without the actor: installs, retries, refusals, batches, the grace
period of the previous receive key under a fake clock."""

from __future__ import annotations

import os

import pytest

from weavenet.crypto.keyring import PREVIOUS_GRACE, KeyReused, KeyRing, key_fingerprint
from weavenet.crypto.protocol import MAX_PAYLOAD, OVERHEAD, Install
from weavenet.crypto.seal import DatagramOpener, DatagramSealer

A, B = "aa:00:00:00:00:0a", "bb:00:00:00:00:0b"


def keys() -> tuple[bytes, bytes]:
    return os.urandom(32), os.urandom(32)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ring(clock: Clock) -> KeyRing:
    return KeyRing(clock=clock)


def test_sealed_datagrams_open_with_the_other_sides_receive_key(ring: KeyRing):
    send, recv = keys()
    assert ring.install(Install(B, 1, send, recv))
    epoch, sealed, failed = ring.seal(B, [b"one", b"two"])
    assert (epoch, failed) == (1, 0) and all(len(s) == 3 + OVERHEAD for s in sealed)
    remote = DatagramOpener(send)
    assert [remote.open(s) for s in sealed] == [b"one", b"two"]
    from_remote = DatagramSealer(recv).seal(b"back")
    assert ring.open(B, [from_remote]) == (1, [b"back"], 0, [])
    assert ring.counters["sealed"] == 2 and ring.counters["opened"] == 1


def test_a_retried_install_changes_nothing_and_a_new_one_restarts_the_counter(ring: KeyRing):
    send, recv = keys()
    install = Install(B, 1, send, recv)
    ring.install(install)
    ring.seal(B, [b"x"])
    assert ring.install(install) is False
    assert ring.peers[B].sealer.sealed == 1
    assert ring.install(Install(B, 2, *keys())) is True
    assert ring.peers[B].sealer.sealed == 0 and ring.peers[B].epoch == 2


@pytest.mark.parametrize("role", ["send", "recv"])
def test_a_key_is_never_used_again_in_the_same_role(ring: KeyRing, role: str):
    send, recv = keys()
    ring.install(Install(B, 1, send, recv))
    ring.forget(B)
    reused = Install(A, 2, send, os.urandom(32)) if role == "send" else \
        Install(A, 2, os.urandom(32), recv)
    with pytest.raises(KeyReused):
        ring.install(reused)
    # in use for another peer is refused too
    other = keys()
    ring.install(Install(B, 3, *other))
    with pytest.raises(KeyReused):
        ring.install(Install(A, 4, other[0], os.urandom(32)))


def test_a_peer_without_keys_fails_every_item(ring: KeyRing):
    assert ring.seal(B, [b"a", b"b"]) == (None, [b"", b""], 2)
    assert ring.open(B, [b"x"]) == (None, [b""], 1, ["no_keys"])
    assert ring.counters["no_keys"] == 3
    assert ring.forget(B) is False


def test_empty_oversized_forged_and_replayed_items_fail_alone(ring: KeyRing):
    send, recv = keys()
    ring.install(Install(B, 1, send, recv))
    epoch, out, failed = ring.seal(B, [b"", b"ok", b"x" * (MAX_PAYLOAD + 1)])
    assert failed == 2 and out[0] == out[2] == b"" and out[1]
    remote = DatagramSealer(recv)
    good = remote.seal(b"hello")
    stranger = DatagramSealer(os.urandom(32))
    forged = [stranger.seal(b"evil") for _ in range(3)][-1]  # seq 2: not yet seen
    _, opened, failed, reasons = ring.open(B, [good, forged, good, b"short",
                                                b"x" * (MAX_PAYLOAD + 1)])
    assert opened[0] == b"hello" and failed == 4
    assert reasons == ["forged", "replayed", "malformed", "malformed"]
    assert ring.counters["malformed"] == 4 and ring.counters["forged"] == 1


def test_previous_receive_key_stops_opening_when_the_grace_period_ends(ring: KeyRing,
                                                                        clock: Clock):
    old_send, old_recv = keys()
    ring.install(Install(A, 1, old_send, old_recv))
    in_flight = [DatagramSealer(old_recv).seal(b"in flight %d" % i) for i in range(2)]
    ring.install(Install(A, 2, *keys()))
    clock.now += PREVIOUS_GRACE - 0.1
    assert ring.open(A, in_flight[:1])[1] == [b"in flight 0"]
    clock.now += 0.2
    assert ring.open(A, in_flight[1:]) == (2, [b""], 1, ["forged"])
    with pytest.raises(KeyReused):
        ring.install(Install(A, 3, os.urandom(32), old_recv))


def test_fingerprints_recognise_a_key_without_revealing_it():
    key = os.urandom(32)
    assert key_fingerprint(key) == key_fingerprint(key) != key_fingerprint(os.urandom(32))
    assert len(key_fingerprint(key)) == 16 and key not in key_fingerprint(key)
