"""Peers added and forgotten at run time, as they are recorded across restarts."""

from pathlib import Path

from weavenet.mesh.peerlist import MAX_ENTRIES, PeerList

H1, H2, H4 = "198.18.0.1:6783", "198.18.0.2:6783", "198.18.0.4:6783"


def test_connected_peers_are_added_and_forgotten_launch_peers_are_dropped() -> None:
    peers = PeerList()
    peers.connect([H4])
    peers.forget([H1])
    assert peers.targets([H1, H2]) == [H2, H4]
    peers.forget([H4])
    assert peers.targets([H1, H2]) == [H2]
    peers.connect([H1])  # connecting again undoes a forget
    assert peers.targets([H1, H2]) == [H1, H2]


def test_a_fresh_launch_naming_a_forgotten_peer_wants_it_back() -> None:
    peers = PeerList()
    peers.forget([H1])
    peers.launched([H1])
    assert peers.targets([H1]) == [H1]


def test_the_record_survives_a_round_trip_and_bad_files_are_empty(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    peers = PeerList()
    peers.connect([H4])
    peers.forget([H1])
    peers.save(path)
    assert PeerList.load(path) == peers
    for junk in ("", "[1, 2]", '{"connected": 5, "forgotten": ["x", 3]}', "\x00"):
        path.write_text(junk)
        loaded = PeerList.load(path)
        assert loaded.connected == [] and loaded.forgotten in ([], ["x"])
    assert PeerList.load(tmp_path / "absent.json") == PeerList()


def test_the_lists_stay_bounded() -> None:
    peers = PeerList()
    peers.connect(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:6783" for i in range(3000))
    assert len(peers.connected) == MAX_ENTRIES
    assert peers.connected[-1] == "10.0.11.183:6783"  # the newest kept
