"""A connection carries traffic only while its data path works both ways, and a failed path is
routed around quickly: the seed's "route around the problem" where production networks break.

host1, host2 and host3 all know each other. Blocking UDP 6783 between host1 and host3 (their
TCP still works) moves their containers' traffic through host2 within 5 s, and back to the
direct path within 10 s after UDP works again; cutting the host1-host3 link altogether is
routed around within 3 s.
"""

from __future__ import annotations

import pytest

from tests.support import (
    actor_status,
    container_pings,
    eventually_pings,
    launch_mesh,
    seconds_until,
    wait_for,
    weave,
)
from weavenet.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]


@pytest.fixture(scope="module")
def net(lab3: Lab):
    h1, h2, h3 = lab3.hosts
    names = launch_mesh(lab3.hosts)
    c = {"a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
         "a3": weave(h3, "run", "10.0.1.3/24", "-t", "-i", "busybox")}
    # Start from the direct route, each host's containers reachable.
    wait_for(lambda: route(h1, names["host3"]) == names["host3"], 30, "the direct route 1-3")
    eventually_pings(h1, c["a1"], "10.0.1.3")
    return lab3, c, names


def route(host, dst: str) -> str | None:
    return actor_status(host, "gossip").get("routes", {}).get(dst)


def row(host, peer: str) -> dict:
    rows = actor_status(host, "gossip").get("connections", [])
    return next((r for r in rows if r.get("peer") == peer), {})


def test_blocked_udp_moves_traffic_through_a_third_host_and_back(net) -> None:
    lab, c, names = net
    h1, h2, h3 = lab.hosts
    lab.block(h1, h3, "udp", 6783)
    try:
        took = seconds_until(
            lambda: route(h1, names["host3"]) == names["host2"]
            and container_pings(h1, c["a1"], "10.0.1.3"), 20,
            "host1's container to reach host3's through host2")
        assert took <= 5.0, f"{took:.1f} s to route around blocked UDP"
        # Status says why the direct connection carries nothing, while its TCP stays up.
        r = wait_for(lambda: (x := row(h1, names["host3"])).get("state") == "connected" and x,
                     5, "host1's row for host3 to say the UDP path is down")
        assert "UDP path down" in r["info"], r
    finally:
        lab.unblock(h1, h3, "udp", 6783)
    took = seconds_until(lambda: route(h1, names["host3"]) == names["host3"]
                         and route(h3, names["host1"]) == names["host1"], 30,
                         "the direct route back once UDP works")
    assert took <= 10.0, f"{took:.1f} s to return to the direct path"
    assert container_pings(h1, c["a1"], "10.0.1.3")
    assert row(h1, names["host3"])["state"] == "established"


def test_a_cut_link_is_routed_around_within_3_seconds(net) -> None:
    lab, c, names = net
    h1, h2, h3 = lab.hosts
    lab.cut(h1, h3)
    try:
        took = seconds_until(lambda: container_pings(h1, c["a1"], "10.0.1.3"), 20,
                             "host1's container to reach host3's around the cut")
        assert took <= 3.0, f"{took:.1f} s to route around a cut link"
        assert route(h1, names["host3"]) == names["host2"]
    finally:
        lab.heal(h1, h3)
