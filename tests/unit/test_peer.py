"""Peer identity: a stable MAC-like name across restarts, a new incarnation UID per start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from weavenet.mesh.peer import PEER_NAME_FILE, Peer, PeerIdentityError, PeerName, new_uid


def test_random_name_is_a_locally_administered_unicast_mac() -> None:
    rng = random.Random(7)
    for _ in range(200):
        name = PeerName.random(rng)
        first = int(name.split(":")[0], 16)
        assert first & 0x02, "locally administered bit must be set"
        assert not first & 0x01, "multicast bit must be clear"
        assert PeerName(name) == name


@pytest.mark.parametrize(
    "text", ["", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "gg:bb:cc:dd:ee:ff", "aabbccddeeff"]
)
def test_invalid_names_are_refused(text: str) -> None:
    with pytest.raises(PeerIdentityError):
        PeerName(text)


def test_names_are_normalised_to_lower_case_so_order_is_numeric() -> None:
    assert PeerName(" AA:BB:CC:DD:EE:0F\n") == "aa:bb:cc:dd:ee:0f"
    assert PeerName("0a:00:00:00:00:00") < PeerName("A0:00:00:00:00:00")


def test_name_survives_a_restart_through_the_state_dir(tmp_path: Path) -> None:
    first = PeerName.load_or_create(tmp_path / "state")
    again = PeerName.load_or_create(tmp_path / "state")
    assert first == again
    assert (tmp_path / "state" / PEER_NAME_FILE).read_text().strip() == first


def test_a_corrupt_name_file_is_an_error_not_a_new_identity(tmp_path: Path) -> None:
    (tmp_path / PEER_NAME_FILE).write_text("not a name\n")
    with pytest.raises(PeerIdentityError, match=PEER_NAME_FILE):
        PeerName.load_or_create(tmp_path)


def test_each_start_is_a_new_incarnation_of_the_same_peer(tmp_path: Path) -> None:
    a = Peer.create(tmp_path, nickname="host1")
    b = Peer.create(tmp_path, nickname="host1")
    assert a.name == b.name
    assert a.uid != b.uid
    assert 0 < a.uid < 2**64


def test_an_explicit_name_replaces_the_persisted_one(tmp_path: Path) -> None:
    Peer.create(tmp_path)
    chosen = Peer.create(tmp_path, name="02:00:00:00:00:01")
    assert chosen.name == "02:00:00:00:00:01"
    assert Peer.create(tmp_path).name == "02:00:00:00:00:01"


def test_nickname_defaults_to_the_hostname(tmp_path: Path) -> None:
    assert Peer.create(tmp_path).nickname == socket.gethostname()


def test_uids_are_nonzero_even_when_the_generator_says_zero() -> None:
    class ZeroFirst(random.Random):
        calls = 0

        def getrandbits(self, k: int) -> int:
            self.calls += 1
            return 0 if self.calls == 1 else 5

    assert new_uid(ZeroFirst()) == 5
