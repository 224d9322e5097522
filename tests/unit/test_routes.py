"""Routes: deterministic BFS over connections both ends report established."""

from __future__ import annotations

import random
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.routes import Routes, established_graph, forwarder_snapshot
from weavenet.mesh.topology import Connection, PeerRecord, Peers

NAMES = [PeerName(f"02:00:00:00:01:{i:02x}") for i in range(16)]


def records_from(reports: dict[int, dict[int, bool]]) -> dict[PeerName, PeerRecord]:
    """reports[a][b] = established flag in a's record for its connection to b."""
    out = {}
    for a, conns in reports.items():
        cs = tuple(
            Connection(NAMES[b], f"h{b}:6783", est, a < b) for b, est in sorted(conns.items())
        )
        out[NAMES[a]] = PeerRecord(NAMES[a], f"h{a}", a + 1, 1, cs)
    return out


def links(*pairs: tuple[int, int]) -> dict[int, dict[int, bool]]:
    reports: dict[int, dict[int, bool]] = {}
    for a, b in pairs:
        reports.setdefault(a, {})[b] = True
        reports.setdefault(b, {})[a] = True
    return reports


def test_unicast_goes_through_the_intermediate_peer_on_a_line() -> None:
    recs = records_from(links((0, 1), (1, 2)))
    r0 = Routes.from_records(NAMES[0], recs)
    assert r0.next_hop(NAMES[2]) == NAMES[1]
    assert r0.next_hop(NAMES[1]) == NAMES[1]
    assert r0.next_hop(NAMES[0]) is None


def test_a_connection_only_one_end_reports_is_not_used() -> None:
    reports = links((0, 1), (1, 2), (0, 2))
    del reports[2][0]  # 2 no longer lists 0 (it dropped the connection, 0 has not noticed)
    r0 = Routes.from_records(NAMES[0], records_from(reports))
    assert r0.next_hop(NAMES[2]) == NAMES[1]


def test_a_connection_not_yet_established_is_not_used() -> None:
    reports = links((0, 1), (1, 2), (0, 2))
    reports[0][2] = False  # heartbeats not yet through
    r0 = Routes.from_records(NAMES[0], records_from(reports))
    assert r0.next_hop(NAMES[2]) == NAMES[1]
    reports[0][2] = True
    assert Routes.from_records(NAMES[0], records_from(reports)).next_hop(NAMES[2]) == NAMES[2]


def test_ties_break_on_the_lower_peer_name() -> None:
    recs = records_from(links((0, 2), (0, 1), (1, 3), (2, 3)))  # a square
    assert Routes.from_records(NAMES[0], recs).next_hop(NAMES[3]) == NAMES[1]


def test_broadcast_on_a_square_reaches_the_far_corner_once() -> None:
    recs = records_from(links((0, 1), (0, 2), (1, 3), (2, 3)))
    r = {i: Routes.from_records(NAMES[i], recs) for i in range(4)}
    assert set(r[0].broadcast_next_hops(NAMES[0])) == {NAMES[1], NAMES[2]}
    # 3 hangs below 1 in 0's tree (lower name wins the tie), so only 1 passes it on.
    assert r[1].broadcast_next_hops(NAMES[0]) == (NAMES[3],)
    assert r[2].broadcast_next_hops(NAMES[0]) == ()
    assert r[3].broadcast_next_hops(NAMES[0]) == ()


def test_unreachable_peers_have_no_routes() -> None:
    recs = records_from(links((0, 1), (2, 3)))
    r0 = Routes.from_records(NAMES[0], recs)
    assert set(r0.unicast) == {NAMES[1]}
    assert set(r0.broadcast) == {NAMES[0], NAMES[1]}


def test_snapshot_for_the_forwarder_is_plain_data() -> None:
    peers = Peers(Peer(NAMES[0], "h0", 1))
    peers.add_connection(Peer(NAMES[1], "h1", 2), "h1:6783", outbound=True, established=True)
    peers.merge([PeerRecord(NAMES[1], "h1", 2, 1, (Connection(NAMES[0], "h0:1", True, False),))])
    snap = forwarder_snapshot(peers, Routes.calculate(peers), {NAMES[1]: "198.18.0.2:6783"})
    assert snap == {
        "local": NAMES[0],
        "peers": {
            NAMES[0]: {"nickname": "h0", "uid": 1, "udp": None},
            NAMES[1]: {"nickname": "h1", "uid": 2, "udp": "198.18.0.2:6783"},
        },
        "unicast": {NAMES[1]: NAMES[1]},
        "broadcast": {NAMES[0]: [NAMES[1]], NAMES[1]: []},
    }
    assert all(type(k) is str for k in snap["peers"])


# -- properties over random topologies -------------------------------------------------------------


@st.composite
def topologies(draw: st.DrawFn) -> dict[int, dict[int, bool]]:
    n = draw(st.integers(2, 12))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=3 * n))
    reports: dict[int, dict[int, bool]] = {i: {} for i in range(n)}
    for a, b in chosen:
        # Mostly healthy links, some half-established, some reported by one end only.
        kind = draw(st.sampled_from(["ok"] * 6 + ["half", "one-sided"]))
        reports[a][b] = kind != "half"
        if kind != "one-sided":
            reports[b][a] = True
    return reports


def truth_graph(reports: dict[int, dict[int, bool]]) -> dict[int, set[int]]:
    return {
        a: {b for b, est in conns.items() if est and reports.get(b, {}).get(a)}
        for a, conns in reports.items()
    }


def distances(graph: dict[int, set[int]], src: int) -> dict[int, int]:
    dist = {src: 0}
    queue = deque([src])
    while queue:
        at = queue.popleft()
        for nxt in graph[at]:
            if nxt not in dist:
                dist[nxt] = dist[at] + 1
                queue.append(nxt)
    return dist


def gossip_until_quiet(reports: dict[int, dict[int, bool]], rnd: random.Random) -> list[Peers]:
    """Each peer builds its own record through the local API, then neighbours exchange full
    updates in random order until nothing improves."""
    peers = [Peers(Peer(NAMES[i], f"h{i}", i + 1)) for i in range(len(reports))]
    for a, conns in reports.items():
        for b, est in conns.items():
            peers[a].add_connection(
                Peer(NAMES[b], f"h{b}", b + 1), f"h{b}:6783", outbound=a < b, established=est
            )
    tcp = sorted(
        {(a, b) for a in reports for b in reports[a]}
        | {(b, a) for a in reports for b in reports[a]}
    )
    changed = True
    while changed:
        changed = False
        rnd.shuffle(tcp)
        for a, b in tcp:
            before = peers[b].fingerprint()
            peers[b].merge(peers[a].full_update())
            changed |= peers[b].fingerprint() != before
    return peers


@settings(max_examples=150, deadline=None)
@given(topologies(), st.randoms(use_true_random=False))
def test_random_topologies_converge_to_the_same_routes_everywhere(reports, rnd) -> None:  # type: ignore[no-untyped-def]
    peers = gossip_until_quiet(reports, rnd)
    truth = records_from(reports)
    for i, view in enumerate(peers):
        # Every peer ends up with the records of everyone it can reach over any connection ...
        reach = distances(
            {a: set(c) | {b for b in reports if a in reports[b]} for a, c in reports.items()}, i
        )
        assert set(view) >= {NAMES[j] for j in reach}
        # ... and computes exactly the routes that the merged topology implies.
        mine = Routes.calculate(view)
        assert mine == Routes.from_records(NAMES[i], {n: truth[n] for n in view})


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_unicast_follows_shortest_paths_and_broadcast_reaches_everyone_once(reports) -> None:  # type: ignore[no-untyped-def]
    recs = records_from(reports)
    graph = truth_graph(reports)
    routes = {i: Routes.from_records(NAMES[i], recs) for i in reports}
    index = {NAMES[i]: i for i in reports}
    for src in reports:
        dist = distances(graph, src)
        assert {index[d] for d in routes[src].unicast} == set(dist) - {src}
        for dst, d in dist.items():
            hop, steps = src, 0
            while hop != dst:
                nxt = routes[hop].next_hop(NAMES[dst])
                assert nxt is not None and index[nxt] in graph[hop]
                hop, steps = index[nxt], steps + 1
            assert steps == d
        received = {i: 0 for i in dist}
        queue = deque([src])
        while queue:
            at = queue.popleft()
            for nxt in routes[at].broadcast_next_hops(NAMES[src]):
                assert index[nxt] in graph[at]
                received[index[nxt]] += 1
                queue.append(index[nxt])
        assert received == {i: (0 if i == src else 1) for i in dist}


@settings(max_examples=50, deadline=None)
@given(topologies(), st.randoms(use_true_random=False))
def test_route_calculation_does_not_depend_on_record_order(reports, rnd) -> None:  # type: ignore[no-untyped-def]
    recs = records_from(reports)
    items = list(recs.items())
    rnd.shuffle(items)
    assert established_graph(dict(items)) == established_graph(recs)
    for name in recs:
        assert Routes.from_records(name, dict(items)) == Routes.from_records(name, recs)
