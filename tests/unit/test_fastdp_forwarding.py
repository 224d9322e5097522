"""Exactly-once delivery with a mix of fast datapath and sleeve peers (the rule in
weavenet.dataplane.forwarding's docstring), on the line and triangle of test_forwarding.

The kernel half is modelled as the bridge and VXLAN device behave (checked against the real
kernel in tests/functional/test_vxlan.py): a local broadcast goes by VXLAN to each of the
origin's fastdp peers, whose bridges deliver it to their containers only (isolated ports: never
to the TAP, so never relayed); the sleeve half is the real Forwarder.
"""

from __future__ import annotations

import itertools
from collections import Counter

from tests.unit.test_forwarding import (
    BCAST,
    LINE,
    MAC_A,
    MAC_B,
    MAC_C,
    TRIANGLE,
    frame,
    network,
    run,
)
from weavenet.dataplane.forwarding import FASTDP_CARRIED, Drop, Send

MACS = {"A": MAC_A, "B": MAC_B, "C": MAC_C}


def edges(routes) -> list[tuple[str, str]]:
    return sorted({tuple(sorted((p, q))) for p, r in routes.items()
                   for q, hop in r.unicast.items() if q == hop})


def mixes(routes):
    """Every assignment of fastdp/sleeve to the direct links (both ends agree)."""
    links = edges(routes)
    for bits in itertools.product((False, True), repeat=len(links)):
        yield {link for link, on in zip(links, bits, strict=True) if on}


def deliveries(routes, fast_links, origin, dst=BCAST) -> Counter[str]:
    fwds = network(routes)
    for p, f in fwds.items():
        f.set_fastdp({q for link in fast_links if p in link for q in link if q != p})
    got, _ = run(fwds, origin, frame(dst, MACS[origin]))
    if dst[0] & 1:
        for q in fwds[origin].fastdp:  # the kernel's flood entries
            got[q] += 1
    return got


def test_broadcast_reaches_every_peer_exactly_once_in_every_mix() -> None:
    for routes in (LINE, TRIANGLE):
        for fast in mixes(routes):
            for origin in routes:
                got = deliveries(routes, fast, origin)
                want = Counter({p: 1 for p in routes if p != origin})
                assert got == want, (sorted(fast), origin, got)


def test_relayed_peer_behind_a_fastdp_peer_gets_the_broadcast_by_the_sleeve() -> None:
    # A-B and B-C on fastdp, A and C not connected: A's broadcast reaches B by the kernel and
    # C through B's sleeve, addressed to C (B relays, does not inject)
    fwds = network(LINE)
    fwds["A"].set_fastdp({"B"})
    actions = fwds["A"].decide_captured(frame(BCAST, MAC_A), 0.0)
    assert [(a.next_hop, a.dst_peer) for a in actions if isinstance(a, Send)] == [("B", "C")]


def test_a_broadcast_only_fastdp_peers_need_is_not_sent_by_the_sleeve() -> None:
    fwds = network(TRIANGLE)
    fwds["A"].set_fastdp({"B", "C"})
    assert fwds["A"].decide_captured(frame(BCAST, MAC_A), 0.0) == [Drop(FASTDP_CARRIED)]


def test_unicast_stays_on_the_sleeve_when_it_reaches_the_tap() -> None:
    """The bridge sends a unicast frame to the TAP only when not by VXLAN (unicast flood off
    on the VXLAN port), so the sleeve carries it even to a fastdp peer, once."""
    fwds = network(TRIANGLE)
    for f in fwds.values():
        f.set_fastdp(set("ABC") - {f.ourself})
    got, _ = run(fwds, "A", frame(MAC_B, MAC_A))  # unknown: flooded along A's tree
    assert got == Counter({"B": 1, "C": 1})
    fwds["A"].macs.learn(MAC_B, "B", 0.0)
    got, hops = run(fwds, "A", frame(MAC_B, MAC_A))
    assert got == Counter({"B": 1}) and hops == [("A", "B")]


def test_routes_replaced_keep_the_fastdp_set() -> None:
    fwds = network(LINE)
    fwds["A"].set_fastdp({"B"})
    fwds["A"].set_table(LINE["A"])
    assert fwds["A"].fastdp == {"B"}
    fwds["A"].set_fastdp(())
    assert [a.dst_peer for a in fwds["A"].decide_captured(frame(BCAST, MAC_A), 0.0)
            if isinstance(a, Send)] == [None]


def test_unicast_to_a_mac_at_a_fastdp_peer_is_reported_for_the_kernel() -> None:
    fwds = network(TRIANGLE)
    fwds["A"].macs.learn(MAC_B, "B", 0.0)
    fwds["A"].macs.learn(MAC_C, "C", 0.0)
    fwds["A"].set_fastdp({"B"})
    plan = fwds["A"].captured([frame(MAC_B, MAC_A), frame(MAC_C, MAC_A)], 0.0)
    assert plan.to_kernel == [(MAC_B, "B")]
    assert set(plan.send) == {("B", "A", "B"), ("C", "A", "C")}  # still sent: exactly once
