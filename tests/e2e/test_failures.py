"""Where production networks break: loss, and a path that drops big datagrams.

Loss: the lab drops a share of what each host receives, at random. With 5 % loss a 50 MB
transfer between containers on different hosts arrives byte-exact (the containers' TCP recovers
what the sleeve loses; the sleeve must not corrupt or wedge). With 20 % loss the mesh stays
connected and pings still get through.

Small MTU: on an underlay that drops UDP datagrams over 700 bytes, 10000-byte pings keep
working for two minutes on end: the frag test fails every 30 s and the path is searched again,
but frames never go bigger than the size last proved to work.
"""

from __future__ import annotations

import pytest

from tests.support import (
    actor_status,
    eventually_pings,
    holds_for,
    replies,
    wait_for,
    wait_listening,
    weave,
)
from weavenet.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]


@pytest.fixture(scope="module")
def net(lab2: Lab):
    h1, h2 = lab2.hosts
    weave(h1, "launch", "10.0.0.1/16")
    weave(h2, "launch", "10.0.0.2/16", h1.ip)
    c = {"a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
         "a2": weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")}
    eventually_pings(h1, c["a1"], "10.0.1.2")
    return lab2, c


@pytest.fixture
def lossy(net):
    """Returns a setter of the loss on both hosts; the loss is removed after the test."""
    lab, _ = net

    def set_loss(percent: float) -> None:
        for host in lab.hosts:
            lab.lose(host, percent)

    yield set_loss
    set_loss(0)


def established_peers(host) -> int:
    rows = actor_status(host, "gossip").get("connections", [])
    return sum(1 for r in rows if r.get("state") == "established")


def test_50_mb_cross_5_percent_loss_byte_exact(net, lossy) -> None:
    lab, c = net
    h1, h2 = lab.hosts
    h1.exec_in_container(c["a1"], ["sh", "-c", "head -c 50000000 /dev/urandom > /tmp/big"])
    want = h1.exec_in_container(c["a1"], ["md5sum", "/tmp/big"]).stdout.split()[0]
    h2.exec_in_container(c["a2"], ["sh", "-c", "nc.openbsd -l 5000 > /tmp/big &"])
    wait_listening(h2, 5000, container=c["a2"])
    lossy(5)
    h1.exec_in_container(c["a1"], ["sh", "-c", "nc.openbsd -N 10.0.1.2 5000 < /tmp/big"],
                         timeout=240)
    got = h2.exec_in_container(c["a2"], ["md5sum", "/tmp/big"]).stdout.split()[0]
    assert got == want


def test_mesh_stays_connected_and_pings_get_through_at_20_percent_loss(net, lossy) -> None:
    lab, c = net
    h1, h2 = lab.hosts
    lossy(20)
    # 20 s is two gossip silence timeouts: a connection that loss could break would break here.
    holds_for(lambda: established_peers(h1) == 1 and established_peers(h2) == 1, 20,
              "both peers to stay connected under 20 % loss", interval=1.0)
    out = h2.exec_in_container(c["a2"], ["ping", "-c", "50", "-i", "0.2", "-W", "1",
                                         "10.0.1.1"], check=False, timeout=60).stdout
    received = replies(out)
    # Each echo crosses two lossy hops (p = 0.8 * 0.8): 32 of 50 expected, sd 3.4.
    assert received >= 15, out


def test_big_pings_keep_working_for_minutes_on_a_path_with_a_small_mtu(net) -> None:
    lab, c = net
    h1, h2 = lab.hosts
    weave(h1, "stop")
    weave(h2, "stop")
    for host in lab.hosts:
        lab.drop_udp_larger_than(host, 700)
    try:
        weave(h1, "launch", "10.0.0.1/16")
        weave(h2, "launch", "10.0.0.2/16", h1.ip)
        eventually_pings(h2, c["a2"], "10.0.1.1", size=10000, timeout=45)

        def small_path() -> dict | None:  # status rides on heartbeats: up to a second behind
            paths = actor_status(h2, "forwarder")["paths"].values()
            path = next(p for p in paths if p["addr"].startswith(h1.ip + ":"))
            return path if path["frag_ok"] is False and path["pmtu"] < 800 else None

        wait_for(small_path, 20, "a path MTU below 800 to host1")
        # 240 pings over 120 s: four failed frag tests and as many searches on the way.
        out = h2.exec_in_container(c["a2"], ["ping", "-q", "-s", "10000", "-c", "240", "-i",
                                             "0.5", "-W", "2", "10.0.1.1"],
                                   check=False, timeout=180).stdout
        received = replies(out)
        # A re-search that let frames grow past the path lost ~9 s in every 30 (~30 %).
        assert received >= 236, out
    finally:
        for host in lab.hosts:
            lab.undrop_udp_larger_than(host)
