"""A host behind NAT, as the seed says works: it launches naming a peer outside, and containers
on both sides talk both ways over TCP and UDP, with exactly the seed's commands.

host3 sits behind its own masquerading router (the lab's NAT: it can dial out, nobody can dial
in). host1 and host2 are outside; host3 names only host1.
"""

from __future__ import annotations

import pytest

from tests.support import (
    eventually_pings,
    file_says,
    log_events,
    status,
    wait_for,
    wait_listening,
    weave,
)
from weavenet.lab import Host, Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]


def status_rows(host: Host) -> list[dict]:
    """The connection rows of `weave status --json`."""
    rows = status(host)["actors"]
    gossip = next(a for a in rows if a["name"] == "gossip").get("status") or {}
    return gossip.get("connections", [])


def dials_to(host: Host, ip: str) -> list[dict]:
    """The host's failed dials of `ip` (a peer it cannot reach would show here, repeatedly)."""
    return [e for e in log_events(host, "connection_failed", of="gossip")
            if str(e.get("address", "")).startswith(f"{ip}:")]


@pytest.fixture(scope="module")
def natted(lab3_nat3: Lab):
    lab = lab3_nat3
    h1, h2, h3 = lab.hosts
    weave(h1, "launch", "10.0.0.1/16")
    weave(h2, "launch", "10.0.0.2/16", h1.ip)
    weave(h3, "launch", "10.0.0.3/16", h1.ip)
    c = {
        "a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
        "a2": weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox"),
        "a3": weave(h3, "run", "10.0.1.3/24", "-t", "-i", "busybox"),
    }
    return lab, c


def test_containers_behind_nat_and_outside_ping_both_ways(natted) -> None:
    lab, c = natted
    h1, h2, h3 = lab.hosts
    for host, cid, ip in ((h3, c["a3"], "10.0.1.1"), (h1, c["a1"], "10.0.1.3"),
                          (h3, c["a3"], "10.0.1.2"), (h2, c["a2"], "10.0.1.3")):
        eventually_pings(host, cid, ip)


@pytest.mark.parametrize("direction", ["into the natted host", "out of the natted host"])
def test_tcp_and_udp_both_ways_across_the_nat(natted, direction: str) -> None:
    lab, c = natted
    _, h2, h3 = lab.hosts
    (server, sc, ip), (client, cc) = (
        ((h3, c["a3"], "10.0.1.3"), (h2, c["a2"])) if direction.startswith("into")
        else ((h2, c["a2"], "10.0.1.2"), (h3, c["a3"])))
    tag = "in" if direction.startswith("into") else "out"
    server.exec_in_container(sc, ["sh", "-c", f"nc -l -p 4400 > /tmp/tcp-{tag} &"])
    server.exec_in_container(sc, ["sh", "-c", f"nc.openbsd -u -l 5500 > /tmp/udp-{tag} &"])
    wait_listening(server, 4400, container=sc)
    wait_listening(server, 5500, udp=True, container=sc)
    client.exec_in_container(cc, ["sh", "-c", f"echo 'Hello, world.' | nc {ip} 4400"],
                             timeout=30)
    client.exec_in_container(
        cc, ["sh", "-c", f"echo 'Hello, world.' | nc.openbsd -u -w1 {ip} 5500"], timeout=30)
    for proto in ("tcp", "udp"):
        wait_for(lambda p=proto: file_says(server, sc, f"/tmp/{p}-{tag}", "Hello, world."), 10,
                 f"the {proto} message {direction}")


def test_outside_peers_see_the_natted_host_inbound_only_and_never_dial_it(natted) -> None:
    lab, _ = natted
    h1, h2, h3 = lab.hosts

    def inbound_rows(host: Host) -> list[dict]:
        return [r for r in status_rows(host)
                if str(r.get("address", "")).startswith(f"{h3.lan_ip}:")]

    for host in (h1, h2):
        # inbound-only: the one dial-back (is its port reachable?) failed, so the link exists
        # only because host3 dials out; status says so (the text view shows the same rows)
        row = wait_for(lambda h=host: (rows := inbound_rows(h)) and rows[0]["info"]
                       == "inbound-only" and rows[0], 30,
                       f"{host.name}'s connection from the NAT host to be inbound-only")
        assert row["state"] == "established", row
        assert "inbound-only" in weave(host, "status")
    # host2 dialled host1, which could dial it back: an inbound link, not inbound-only
    h2_ip = h2.ip
    rows = [r for r in status_rows(h1) if str(r.get("address", "")).startswith(f"{h2_ip}:")]
    assert rows and rows[0]["info"] == "inbound", rows
    # Outside peers learn of host3 only through connections it made: nothing tells them an
    # address to dial, so after the whole module ran neither host1 nor host2 has dialled it in
    # a loop (the dial-back is a bare TCP connect, not a connection attempt).
    assert dials_to(h1, h3.lan_ip) == [] and dials_to(h2, h3.lan_ip) == []
    assert dials_to(h1, h3.ip) == [] and dials_to(h2, h3.ip) == []
