from collections import Counter

from tests.unit.frames_helper import eth, mac
from weavenet.dataplane.forwarding import (
    BAD_SRC_MAC,
    LOCAL_DST,
    NO_PEERS,
    NO_ROUTE,
    OWN_FRAME_LOOPED,
    OWN_MAC_FROM_NETWORK,
    RUNT,
    Drop,
    Forwarder,
    Inject,
    RouteTable,
    Send,
)
from weavenet.dataplane.maccache import Learned, MacCache

BCAST = b"\xff" * 6
MAC_A, MAC_B, MAC_C = mac(0xA), mac(0xB), mac(0xC)

# Line A - B - C: every peer's routes as the gossip actor would compute them.
LINE = {
    "A": RouteTable({"B": "B", "C": "B"}, {"A": ["B"], "B": [], "C": []}),
    "B": RouteTable({"A": "A", "C": "C"}, {"A": ["C"], "B": ["A", "C"], "C": ["A"]}),
    "C": RouteTable({"A": "B", "B": "B"}, {"A": [], "B": [], "C": ["B"]}),
}
# Triangle: everyone reaches everyone directly; a peer's tree is its direct neighbours.
TRIANGLE = {
    p: RouteTable(
        {q: q for q in "ABC" if q != p},
        {s: ([q for q in "ABC" if q != p] if s == p else []) for s in "ABC"},
    )
    for p in "ABC"
}


def frame(dst: bytes, src: bytes, payload: bytes = b"hello") -> bytes:
    return eth(dst, src, 0x88B5, payload.ljust(46, b"\x00"))


def network(routes):
    return {p: Forwarder(p, MacCache(), r) for p, r in routes.items()}


def run(fwds, origin, frame_, now=0.0):
    """Capture ``frame_`` at ``origin`` and carry every Send to its next hop until quiet.

    Returns injections per peer and every hop taken as (from, to).
    """
    injected: Counter[str] = Counter()
    hops: list[tuple[str, str]] = []
    queue = [(origin, a) for a in fwds[origin].decide_captured(frame_, now)]
    while queue:
        at, action = queue.pop(0)
        if isinstance(action, Inject):
            injected[at] += 1
        elif isinstance(action, Send):
            hops.append((at, action.next_hop))
            nxt = fwds[action.next_hop]
            for a in nxt.decide_received(action.src_peer, action.dst_peer, action.frame, now):
                queue.append((action.next_hop, a))
    return injected, hops


def test_unicast_to_a_mac_at_the_far_end_of_a_line_goes_via_the_middle():
    fwds = network(LINE)
    fwds["A"].macs.learn(MAC_C, "C", 0.0)
    actions = fwds["A"].decide_captured(frame(MAC_C, MAC_A), 0.0)
    assert actions == [Send("B", "A", "C", frame(MAC_C, MAC_A))]


def test_middle_peer_relays_unicast_without_injecting_it():
    fwds = network(LINE)
    actions = fwds["B"].decide_received("A", "C", frame(MAC_C, MAC_A), 0.0)
    assert actions == [Send("C", "A", "C", frame(MAC_C, MAC_A))]
    assert fwds["B"].macs.lookup(MAC_A, 0.0) == "A"


def test_unicast_across_the_line_is_injected_once_at_the_destination():
    fwds = network(LINE)
    fwds["A"].macs.learn(MAC_C, "C", 0.0)
    injected, hops = run(fwds, "A", frame(MAC_C, MAC_A))
    assert injected == {"C": 1}
    assert hops == [("A", "B"), ("B", "C")]
    assert fwds["C"].macs.lookup(MAC_A, 0.0) == "A"  # C learned where A's container lives


def test_broadcast_from_the_end_of_a_line_reaches_every_other_peer_exactly_once():
    fwds = network(LINE)
    injected, hops = run(fwds, "A", frame(BCAST, MAC_A))
    assert injected == {"B": 1, "C": 1}
    assert hops == [("A", "B"), ("B", "C")]


def test_broadcast_from_the_middle_and_in_a_triangle_is_delivered_exactly_once():
    injected, _ = run(network(LINE), "B", frame(BCAST, MAC_B))
    assert injected == {"A": 1, "C": 1}
    injected, hops = run(network(TRIANGLE), "C", frame(mac(0x100, group=True), MAC_C))
    assert injected == {"A": 1, "B": 1}
    assert sorted(hops) == [("C", "A"), ("C", "B")]


def test_unknown_unicast_floods_along_our_tree_and_the_reply_goes_direct():
    fwds = network(LINE)
    injected, _ = run(fwds, "A", frame(MAC_C, MAC_A))
    assert injected == {"B": 1, "C": 1}
    # C learned MAC_A at A from the flood, so its reply is unicast: no flooding back
    injected, hops = run(fwds, "C", frame(MAC_A, MAC_C))
    assert injected == {"A": 1}
    assert hops == [("C", "B"), ("B", "A")]


def test_frames_for_a_local_mac_are_left_to_the_bridge():
    fwd = network(LINE)["A"]
    fwd.decide_captured(frame(BCAST, mac(0x11)), 0.0)
    assert fwd.decide_captured(frame(mac(0x11), MAC_A), 0.0) == [Drop(LOCAL_DST)]


def test_our_own_frames_coming_back_from_the_network_are_dropped():
    fwds = network(TRIANGLE)
    fwds["A"].decide_captured(frame(BCAST, MAC_A), 10.0)
    # a confused peer sends A's frame back, either still naming A as source or as its own
    assert fwds["A"].decide_received("A", None, frame(BCAST, MAC_A), 10.1) == [
        Drop(OWN_FRAME_LOOPED)
    ]
    assert fwds["A"].decide_received("B", None, frame(BCAST, MAC_A), 10.1) == [
        Drop(OWN_MAC_FROM_NETWORK)
    ]
    assert fwds["A"].macs.lookup(MAC_A, 10.1) == "A"  # the loop did not steal our MAC


def test_a_container_that_moved_away_is_followed_after_the_grace_period():
    fwd = Forwarder("A", MacCache(), TRIANGLE["A"], local_grace=3.0)
    fwd.decide_captured(frame(BCAST, MAC_A), 10.0)
    actions = fwd.decide_received("B", None, frame(BCAST, MAC_A), 14.0)
    assert actions == [Inject(frame(BCAST, MAC_A))]
    assert fwd.macs.lookup(MAC_A, 14.0) == "B"


def test_a_container_that_moved_here_is_local_at_once():
    fwd = network(TRIANGLE)["A"]
    fwd.decide_received("B", None, frame(BCAST, MAC_B), 0.0)
    fwd.decide_captured(frame(BCAST, MAC_B), 0.5)
    assert fwd.macs.lookup(MAC_B, 0.5) == "A"


def test_learning_is_reported_for_new_and_moved_macs_only():
    fwd = network(TRIANGLE)["A"]
    plan = fwd.captured([frame(BCAST, MAC_A), frame(BCAST, MAC_A)], 0.0)
    assert plan.learned == [(MAC_A, "A", Learned.NEW)]
    plan = fwd.received("B", None, [frame(BCAST, MAC_B)], 9.0)
    plan = fwd.received("C", None, [frame(BCAST, MAC_B)], 9.5, plan)
    assert plan.learned == [(MAC_B, "B", Learned.NEW), (MAC_B, "C", Learned.MOVED)]


def test_batches_group_frames_per_next_hop_and_peers_in_order():
    fwds = network(LINE)
    fwd = fwds["A"]
    fwd.macs.learn(MAC_C, "C", 0.0)
    fwd.macs.learn(MAC_B, "B", 0.0)
    frames = [frame(MAC_C, MAC_A, b"1"), frame(MAC_B, MAC_A, b"2"), frame(MAC_C, MAC_A, b"3")]
    plan = fwd.captured(frames, 0.0)
    assert plan.send == {("B", "A", "C"): [frames[0], frames[2]], ("B", "A", "B"): [frames[1]]}


def test_unroutable_runt_and_bogus_frames_are_dropped_with_reasons():
    fwd = Forwarder("A", MacCache(), LINE["A"])
    fwd.macs.learn(MAC_C, "Z", 0.0)  # a peer we have no route to
    assert fwd.decide_captured(frame(MAC_C, MAC_A), 0.0) == [Drop(NO_ROUTE)]
    assert fwd.decide_captured(frame(BCAST, MAC_A)[:23], 0.0) == [Drop(RUNT)]
    assert fwd.decide_captured(frame(BCAST, BCAST), 0.0) == [Drop(BAD_SRC_MAC)]
    assert fwd.decide_received("C", "Z", frame(MAC_A, MAC_C), 0.0) == [Drop(NO_ROUTE)]
    assert fwd.received("C", None, [b"short"], 0.0).drops == {RUNT: 1}


def test_a_lonely_peer_counts_floods_that_go_nowhere():
    fwd = Forwarder("A", MacCache())
    assert fwd.decide_captured(frame(BCAST, MAC_A), 0.0) == [Drop(NO_PEERS)]


def test_the_route_table_can_be_replaced_by_a_plain_snapshot():
    fwd = Forwarder("A", MacCache(), eth_offset=0)
    fwd.set_table({"unicast": {"B": "B"}, "broadcast": {"A": ["B"]}})
    bare = frame(BCAST, MAC_A)[10:]
    assert fwd.decide_captured(bare, 0.0) == [Send("B", "A", None, bare)]


def test_decisions_within_a_batch_see_what_earlier_frames_taught():
    fwd = network(LINE)["A"]
    x, y = mac(0x21), mac(0x22)
    plan = fwd.captured([frame(y, x), frame(y, x), frame(x, y), frame(y, x)], 0.0)
    # y was unknown for the first two frames (flooded), then spoke locally: the last one,
    # like y's own frame to x, stays on the local bridge
    assert plan.send == {("B", "A", None): [frame(y, x), frame(y, x)]}
    assert plan.drops == {LOCAL_DST: 2}


def test_received_batch_mixing_foreign_and_own_macs_drops_only_ours():
    fwd = network(LINE)["B"]
    fwd.decide_captured(frame(BCAST, MAC_B), 0.0)
    frames = [frame(BCAST, MAC_A), frame(BCAST, MAC_B), frame(BCAST, MAC_B), frame(BCAST, MAC_A)]
    plan = fwd.received("A", None, frames, 0.5)
    assert plan.inject == [frames[0], frames[3]]
    assert plan.send == {("C", "A", None): [frames[0], frames[3]]}
    assert plan.drops == {OWN_MAC_FROM_NETWORK: 2}
    plan = fwd.received("A", None, [frame(BCAST, MAC_B)], 0.6)
    assert plan.send == {} and plan.inject == []
