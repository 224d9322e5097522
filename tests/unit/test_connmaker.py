"""ConnectionMaker: what to dial and when, with a fake clock."""

from __future__ import annotations

import random

from weavenet.mesh.connmaker import (
    QUICK_FOR,
    QUICK_RETRY,
    ConnectionMaker,
    Source,
    TargetState,
    discovery_candidates,
)
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.topology import Connection, PeerRecord, Peers

P1 = PeerName("02:00:00:00:00:01")
P2 = PeerName("02:00:00:00:00:02")
P3 = PeerName("02:00:00:00:00:03")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def maker(seed: int = 1) -> tuple[ConnectionMaker, Clock]:
    clock = Clock()
    return ConnectionMaker(clock=clock, rng=random.Random(seed)), clock


def state(cm: ConnectionMaker, address: str) -> TargetState:
    return next(t.state for t in cm.targets() if t.address == address)


def test_launch_targets_are_dialled_at_once_and_only_once() -> None:
    cm, clock = maker()
    cm.add(["host1", "host2:7000"], Source.LAUNCH)
    assert cm.due() == ["host1:6783", "host2:7000"]
    assert cm.due() == []  # still connecting
    assert state(cm, "host1:6783") is TargetState.CONNECTING


def test_failures_back_off_randomly_from_2s_by_1_5_up_to_the_cap() -> None:
    cm, clock = maker(seed=3)
    cm.add(["host1"], Source.LAUNCH)
    expected_interval = 2.0
    for _ in range(20):
        assert cm.due() == ["host1:6783"]
        cm.failed("host1:6783", "connection refused")
        delay = cm.next_due() - clock.now  # type: ignore[operator]
        assert expected_interval / 2 <= delay <= expected_interval * 1.5
        clock.now += delay - 0.01
        assert cm.due() == []  # not before its time
        clock.now = cm.next_due()  # type: ignore[assignment]
        expected_interval = min(expected_interval * 1.5, 120.0)
    assert expected_interval == 120.0


def test_backoff_delays_are_spread_not_identical() -> None:
    delays = set()
    for seed in range(20):
        cm, clock = maker(seed)
        cm.add(["host1"])
        cm.due()
        cm.failed("host1:6783", "timeout")
        delays.add(round(cm.next_due() - clock.now, 3))  # type: ignore[operator]
    assert len(delays) > 10


def test_permanent_errors_are_not_retried_until_the_user_names_the_target_again() -> None:
    cm, clock = maker()
    cm.add(["host1"], Source.LAUNCH)
    cm.due()
    cm.failed("host1", "connection to self", permanent=True)
    clock.now += 10_000
    assert cm.due() == [] and cm.next_due() is None
    assert state(cm, "host1:6783") is TargetState.REFUSED
    cm.add(["host1"])  # `weave connect host1`
    assert cm.due() == ["host1:6783"]


def test_a_connected_target_redials_soon_after_its_peer_is_lost() -> None:
    cm, clock = maker()
    cm.add(["host1"], Source.LAUNCH)
    cm.due()
    cm.connected("host1", P1)
    clock.now += 500
    assert cm.due() == []
    cm.peer_disconnected(P1, "heartbeats stopped")
    assert cm.due() == []  # not in the same instant as the other end
    clock.now += 3.0
    assert cm.due() == ["host1:6783"]


def test_a_peer_that_said_it_is_shutting_down_is_redialled_quickly_for_a_while() -> None:
    cm, clock = maker()
    cm.add(["host1"], Source.LAUNCH)
    cm.due()
    cm.connected("host1", P1)
    start = clock.now
    cm.peer_disconnected(P1, "remote said goodbye: peer shutting down", relaunching=True)
    while clock.now < start + QUICK_FOR - 1:
        clock.now += QUICK_RETRY
        assert cm.due() == ["host1:6783"]  # refused while it is down, then
        cm.failed("host1:6783", "connection refused")
    clock.now = start + QUICK_FOR  # it did not come back: the usual backoff from 2 s
    assert cm.due() == ["host1:6783"]
    cm.failed("host1:6783", "connection refused")
    assert 1.0 <= cm.next_due() - clock.now <= 3.0  # type: ignore[operator]


def test_a_target_idle_while_the_peer_dialled_us_is_redialled_quickly_too() -> None:
    cm, clock = maker()
    cm.add(["host1"], Source.LAUNCH)
    cm.due()
    cm.connected("host1", P1)
    cm.peer_disconnected(P1, "connection closed by remote")  # waiting for its redial, but
    cm.peer_connected(P1)  # the peer dialled us first: the target stays idle
    clock.now += 10
    assert cm.due() == []
    cm.peer_disconnected(P1, "remote said goodbye: peer shutting down", relaunching=True)
    clock.now += QUICK_RETRY
    assert cm.due() == ["host1:6783"]
    cm.failed("host1:6783", "connection refused")
    assert cm.next_due() == clock.now + QUICK_RETRY


def test_forget_drops_a_user_target_but_not_what_the_topology_still_mentions() -> None:
    cm, _ = maker()
    cm.add(["host1", "host2"])
    cm.update_discovered({"host2:6783": P2})
    assert cm.forget(["host1", "host2", "host9"]) == ["host1:6783", "host2:6783"]
    assert [t.address for t in cm.targets()] == ["host2:6783"]
    assert [t.sources for t in cm.targets()] == [{Source.DISCOVERED}]


def test_discovered_targets_are_skipped_while_their_peer_is_connected() -> None:
    cm, clock = maker()
    cm.peer_connected(P2)  # P2 dialled us
    cm.update_discovered({"host2:6783": P2, "host3:6783": P3})
    assert cm.due() == ["host3:6783"]
    cm.update_discovered({"host2:6783": P2})  # P3 gone from the topology
    assert [t.address for t in cm.targets()] == ["host2:6783"]
    cm.peer_disconnected(P2)
    clock.now += 1
    assert cm.due() == ["host2:6783"]


def test_a_duplicate_dial_counts_as_reaching_the_peer() -> None:
    cm, clock = maker()
    cm.add(["host2"])
    cm.due()
    cm.connected("host2", P2)  # handshake done, then closed as the losing duplicate
    clock.now += 1000
    assert cm.due() == []
    (target,) = cm.targets()
    assert target.state is TargetState.CONNECTED and target.peer == P2


def test_status_reports_state_reason_and_retry_time() -> None:
    cm, clock = maker()
    cm.add(["host1"], Source.LAUNCH)
    cm.due()
    cm.failed("host1", "no route to host")
    (target,) = cm.targets()
    assert target.attempts == 1 and target.sources == {Source.LAUNCH}
    row = target.status_row(clock.now)
    assert row["address"] == "host1:6783" and row["state"] == "failed"
    assert row["info"].startswith("no route to host, retry in ")
    assert 1.0 <= float(row["info"].rpartition(" ")[2].rstrip("s")) <= 3.0


def test_status_shows_a_refused_target_as_not_retried_and_a_fresh_one_as_connecting() -> None:
    cm, clock = maker()
    cm.add(["host1", "host2"])
    cm.due()
    cm.failed("host1", "password mismatch", permanent=True)
    rows = {t.address: t.status_row(clock.now) for t in cm.targets()}
    assert rows["host1:6783"]["info"] == "password mismatch (not retried)"
    assert (rows["host2:6783"]["state"], rows["host2:6783"]["info"]) == ("connecting", None)


def test_discovery_offers_dialable_addresses_of_peers_we_are_not_connected_to() -> None:
    me = Peers(Peer(P1, "one", 1))
    me.add_connection(Peer(P2, "two", 2), "198.18.0.2:6783", outbound=True, established=True)
    p4 = PeerName("02:00:00:00:00:04")
    me.merge(
        [
            PeerRecord(
                P2,
                "two",
                2,
                1,
                (
                    Connection(P1, "198.18.0.1:40000", True, False),  # us: skipped
                    Connection(P3, "198.18.0.3:7000", True, True),  # dialled by 2: as is
                    Connection(p4, "198.18.0.4:51234", True, False),  # dialled 2: default port
                ),
            )
        ]
    )
    assert discovery_candidates(me) == {"198.18.0.3:7000": P3, "198.18.0.4:6783": p4}
