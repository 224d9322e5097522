"""The memory of refused inbound connections shown by ``weave status``."""

from __future__ import annotations

from weavenet.mesh.refusals import Refusals


def test_repeated_refusals_from_one_host_are_counted_in_one_row() -> None:
    refusals = Refusals()
    refusals.remember("198.18.0.2", "02:00:00:00:00:02", "password mismatch", 10.0)
    refusals.remember("198.18.0.2", "02:00:00:00:00:02", "password mismatch", 20.0)
    (row,) = [r.status_row(25.0) for r in refusals.recent(25.0)]
    assert row["address"] == "198.18.0.2" and row["state"] == "refused"
    assert row["info"] == "inbound refused: password mismatch (2x, 5s ago)"


def test_old_refusals_are_hidden_and_the_oldest_hosts_dropped_beyond_the_limit() -> None:
    refusals = Refusals(limit=2, shown_for=100.0)
    for i in range(3):
        refusals.remember(f"198.18.0.{i}", None, "peer name collision", float(i))
    assert [r.address for r in refusals.recent(50.0)] == ["198.18.0.1", "198.18.0.2"]
    assert refusals.recent(102.5) == []


def test_a_peer_that_connects_clears_what_was_refused_from_it_or_its_host() -> None:
    refusals = Refusals()
    refusals.remember("198.18.0.2", "02:00:00:00:00:02", "password mismatch", 0.0)
    refusals.remember("198.18.0.3", None, "remote peer requires encryption", 0.0)
    refusals.remember("198.18.0.4", "02:00:00:00:00:04", "password mismatch", 0.0)
    refusals.forget("198.18.0.3", "02:00:00:00:00:02")
    assert [r.address for r in refusals.recent(1.0)] == ["198.18.0.4"]
