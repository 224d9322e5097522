"""A hundred peers in one process gossiping through the real Peers/Routes code (no sockets)."""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from weavenet.mesh.peer import PeerName
from weavenet.mesh.simulation import MeshSim, SimStats

N = 100


def report(event: str, stats: SimStats) -> None:
    # Shown with `pytest -s`; the figures are part of what this test is for.
    s = stats
    print(f"{event:>10}: {s.rounds:3d} rounds {s.messages:6d} messages {s.records:7d} records")


def links(sim: MeshSim) -> int:
    return sum(len(node.neighbours) for node in sim.nodes.values()) // 2


@pytest.fixture(scope="module")
def mesh() -> tuple[MeshSim, list[PeerName]]:
    sim = MeshSim(random.Random(2014))
    names = sim.build(N, degree=3)
    stats = sim.run_until_quiet()
    report("bootstrap", stats)
    sim.assert_converged(routes=True)
    assert stats.rounds <= 20
    return sim, names


def test_a_hundred_peers_converge_from_a_cold_start(mesh: tuple[MeshSim, list[PeerName]]) -> None:
    sim, _ = mesh
    assert len(sim.components()) == 1
    assert all(len(node.peers) == N for node in sim.nodes.values())


def test_a_joining_peer_is_known_everywhere_with_traffic_linear_in_links(
    mesh: tuple[MeshSim, list[PeerName]],
) -> None:
    sim, names = mesh
    joiner = sim.add_peer("joiner")
    for other in sim.rng.sample(names, 3):
        sim.connect(joiner, other)
    stats = sim.run_until_quiet()
    report("join", stats)
    sim.assert_converged(routes=True)
    assert all(joiner in node.peers for node in sim.nodes.values())
    assert stats.rounds <= 15
    # Each of the few changed records crosses each link about once: O(links), far below N^2.
    assert stats.messages <= 6 * links(sim)
    assert stats.messages < len(sim.nodes) ** 2 / 4


def test_a_departed_peer_is_forgotten_everywhere(mesh: tuple[MeshSim, list[PeerName]]) -> None:
    sim, names = mesh
    leaver = names[N // 3]
    sim.remove_peer(leaver)
    stats = sim.run_until_quiet()
    report("leave", stats)
    sim.assert_converged(routes=True)
    assert all(leaver not in node.peers for node in sim.nodes.values())
    assert stats.rounds <= 15
    assert stats.messages <= 6 * links(sim)


def test_a_partition_splits_the_views_and_healing_rejoins_them(
    mesh: tuple[MeshSim, list[PeerName]],
) -> None:
    sim, names = mesh
    side = sim.connected_half(names[0])
    cut = sim.partition(side)
    stats = sim.run_until_quiet()
    report("partition", stats)
    sim.assert_converged()
    assert len(sim.components()) >= 2
    inside, outside = sim.nodes[side[0]].peers, set(sim.nodes) - set(side)
    assert not outside & set(inside), "the cut-off side must be garbage-collected"

    assert sim.heal() == cut
    stats = sim.run_until_quiet()
    report("heal", stats)
    sim.assert_converged(routes=True)
    assert len(sim.components()) == 1
    assert stats.rounds <= 15
    # Healing re-sends each side's records across every restored link; still well below N^2
    # messages even though `cut` links changed at once.
    assert stats.messages < len(sim.nodes) ** 2 / 2


def test_a_restarted_peer_replaces_its_old_incarnation_everywhere(
    mesh: tuple[MeshSim, list[PeerName]],
) -> None:
    sim, names = mesh
    name = names[N // 2]
    old_uid = sim.nodes[name].peer.uid
    sim.restart_peer(name)
    stats = sim.run_until_quiet()
    report("restart", stats)
    sim.assert_converged(routes=True)
    new_uid = sim.nodes[name].peer.uid
    assert new_uid != old_uid
    assert {node.peers[name].uid for node in sim.nodes.values()} == {new_uid}


@settings(max_examples=25, deadline=None)
@example(12281, ["join", "split", "link", "join", "join", "unlink"])
@given(
    st.integers(0, 2**32),
    st.lists(st.sampled_from(["join", "leave", "link", "unlink", "restart", "split"]), max_size=6),
)
def test_small_meshes_converge_after_any_sequence_of_changes(seed: int, events: list[str]) -> None:
    sim = MeshSim(random.Random(seed))
    names = sim.build(12, degree=2)
    sim.run_until_quiet()
    rng = random.Random(seed + 1)
    for event in events:
        live = sorted(sim.nodes)
        a, b = rng.sample(live, 2)
        if event == "join":
            new = sim.add_peer()
            sim.connect(new, a)
        elif event == "leave" and len(live) > 3:
            sim.remove_peer(a)
        elif event == "link":
            sim.connect(a, b)
        elif event == "unlink":
            sim.disconnect(a, sorted(sim.nodes[a].neighbours)[0]) if sim.nodes[
                a
            ].neighbours else None
        elif event == "restart":
            sim.restart_peer(a)
        elif event == "split":
            sim.partition(sim.connected_half(a))
        # Changes may overlap in flight: only sometimes wait for quiet in between.
        if rng.random() < 0.5:
            sim.run_until_quiet(max_rounds=200)
    sim.heal()
    sim.run_until_quiet(max_rounds=200)
    # Flooding alone may leave a record behind that an early garbage collection dropped (e.g.
    # seed 12281: join, split, link, join, join, unlink); the routers' periodic full exchange
    # is what repairs it, so a few rounds of it are part of converging.
    for _ in range(5):
        if not sim.topology_problems():
            break
        sim.full_exchange()
        sim.run_until_quiet(max_rounds=200)
    sim.assert_converged(routes=True)
    assert names  # the initial mesh was built
