"""The mesh on three lab hosts (no dockerd): discovery, routing around a cut, healing, restarts.

host3 names only host2, and host2 only host1; the underlay between host1 and host3 is cut before
launch. The tests run in file order on one shared mesh, each leaving it whole for the next. They
look only at the control plane (`weave status --json`, `weave logs`), never at container traffic.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import actor, log_events, wait_for, weave
from weavenet.lab import Host, Lab, LabError
from weavenet.lab.lab import unique_prefix

pytestmark = pytest.mark.root

PORT = 6783


def gossip(host: Host) -> dict[str, Any]:
    """Gossip's last heartbeat status, with its pid and state from the supervisor."""
    row = actor(host, "gossip")
    return {**(row.get("status") or {}), "pid": row["pid"], "state": row["state"]}


def established(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{peer name: connection row} of a gossip status's established connections."""
    return {c["peer"]: c for c in st.get("connections", []) if c["state"] == "established"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces)")
    the_lab = Lab(3, prefix=unique_prefix("wg"), docker=False)
    try:
        the_lab.up()
        h1, h2, h3 = the_lab.hosts
        the_lab.cut(h1, h3)
        weave(h1, "launch", "10.0.0.1/16")
        weave(h2, "launch", "10.0.0.2/16", h1.ip)
        weave(h3, "launch", "10.0.0.3/16", h2.ip)  # host3 knows only host2
        yield the_lab
    finally:
        for host in the_lab.hosts:
            with contextlib.suppress(Exception):
                host.run(["weave", "reset"], check=False, timeout=60)
        with contextlib.suppress(LabError):
            the_lab.down()


@pytest.fixture(scope="module")
def names(lab: Lab) -> dict[str, str]:
    """host name -> peer name."""
    return {h.name: gossip(h)["peer"]["name"] for h in lab.hosts}


def all_list_everyone(lab: Lab, names: dict[str, str]) -> bool:
    want = set(names.values())
    return all({p["name"] for p in gossip(h)["peers"]} == want for h in lab.hosts)


def test_hosts_that_name_one_peer_all_list_each_other(lab: Lab, names: dict[str, str]) -> None:
    assert len(set(names.values())) == 3
    wait_for(lambda: all_list_everyone(lab, names), 10, "every host to list all three peers")
    nick = {p["name"]: p["nickname"] for p in gossip(lab.hosts[0])["peers"]}
    assert nick == {names[h.name]: h.name for h in lab.hosts}


def test_routes_go_around_a_cut_link(lab: Lab, names: dict[str, str]) -> None:
    h1 = lab.hosts[0]

    def via_host2() -> dict[str, Any] | None:
        st = gossip(h1)
        return st if st["routes"].get(names["host3"]) == names["host2"] else None

    st = wait_for(via_host2, 10, "host1's route to host3 via host2")
    assert names["host3"] not in established(st)
    # host1 learnt host3's address from gossip and keeps trying it.
    row = next(c for c in st["connections"] if c["address"] == f"{lab.hosts[2].ip}:{PORT}")
    assert row["state"] in ("connecting", "failed", "retrying"), row


def test_discovered_peer_is_connected_directly_when_the_link_heals(
        lab: Lab, names: dict[str, str]) -> None:
    h1, _, h3 = lab.hosts
    lab.heal(h1, h3)

    def direct() -> bool:
        return (names["host3"] in established(gossip(h1))
                and names["host1"] in established(gossip(h3))
                and gossip(h1)["routes"].get(names["host3"]) == names["host3"])

    wait_for(direct, 25, "a direct host1-host3 connection")
    # Duplicate dials (both ends discover each other) settle on exactly one connection; the
    # loser of the race may still be listed for a heartbeat or two.
    wait_for(lambda: len([c for c in gossip(h1)["connections"]
                          if c["peer"] == names["host3"]]) == 1,
             10, "exactly one host1-host3 connection")


def test_a_cut_link_is_marked_lost_and_remade_when_it_heals(
        lab: Lab, names: dict[str, str]) -> None:
    h1, _, h3 = lab.hosts
    lost_before = [len(log_events(h, "connection_lost", of="gossip")) for h in (h1, h3)]
    lab.cut(h1, h3)
    try:
        # Traffic stops using the link as soon as its UDP path is down (test_failover); the TCP
        # connection itself is declared lost after gossip's silence timeout, with its reason.
        def lost_at(host, other: str, before: int) -> bool:
            lost = log_events(host, "connection_lost", of="gossip")[before:]
            return any(e.get("remote") == names[other] and e.get("reason") for e in lost)

        wait_for(lambda: lost_at(h1, "host3", lost_before[0])
                 and lost_at(h3, "host1", lost_before[1]), 20,
                 "both ends to drop the cut connection, with a reason")
        assert names["host3"] not in established(gossip(h1))
        assert names["host1"] not in established(gossip(h3))
        # Still one mesh: routes between host1 and host3 now go through host2 (status rides
        # on heartbeats, so the new route may show a moment after the lost connection).
        st = wait_for(lambda: (s := gossip(h1))["routes"].get(names["host3"]) == names["host2"]
                      and s, 10, "host1's route to host3 via host2")
        rows = [c for c in st["connections"] if c["address"] == f"{h3.ip}:{PORT}"]
        assert rows and rows[0]["state"] in ("connecting", "failed", "retrying"), rows
    finally:
        lab.heal(h1, h3)

    def remade() -> bool:
        return (names["host3"] in established(gossip(h1))
                and names["host1"] in established(gossip(h3)))

    wait_for(remade, 30, "the host1-host3 connection to be remade")


def test_killed_gossip_actor_is_restarted_and_the_mesh_is_whole_again(
        lab: Lab, names: dict[str, str]) -> None:
    h1 = lab.hosts[0]
    before = gossip(h1)
    os.kill(before["pid"], signal.SIGKILL)

    def whole() -> bool:
        st = gossip(h1)
        if st["state"] != "running" or st["pid"] == before["pid"] or "peer" not in st:
            return False
        uid = st["peer"]["uid"]
        views = [{p["name"]: p["uid"] for p in gossip(h)["peers"]} for h in lab.hosts]
        return (uid != before["peer"]["uid"]
                and all(v.get(names["host1"]) == uid and len(v) == 3 for v in views)
                and set(established(st)) == {names["host2"], names["host3"]}
                and st["routes"] == {names["host2"]: names["host2"],
                                     names["host3"]: names["host3"]})

    wait_for(whole, 30, "host1's new gossip incarnation to rejoin the mesh")


def test_connect_and_forget_change_the_connection_set(lab: Lab) -> None:
    h1 = lab.hosts[0]
    nowhere = "198.18.0.99:6783"  # inside the lab's LAN, where nobody answers

    def row() -> dict[str, Any] | None:
        return next((c for c in gossip(h1)["connections"] if c["address"] == nowhere), None)

    assert row() is None
    weave(h1, "connect", "198.18.0.99")
    failed = wait_for(lambda: (r := row()) and r["state"] == "failed" and r["info"] and r, 15,
                      "the unreachable target to fail with a reason")
    assert "time" in failed["info"] or "unreach" in failed["info"].lower(), failed
    weave(h1, "forget", "198.18.0.99")
    wait_for(lambda: row() is None, 5, "the forgotten target to disappear")


def test_garbage_on_the_peer_port_is_dropped_with_a_logged_reason(
        lab: Lab, names: dict[str, str]) -> None:
    h1, _, h3 = lab.hosts
    before = gossip(h1)
    seen = len(log_events(h1, "connection_closed", "connection_refused", of="gossip"))
    h3.run(f"head -c 4096 /dev/urandom | nc -w1 {h1.ip} {PORT}", check=False, timeout=15)

    def dropped() -> list[dict[str, Any]]:
        events = log_events(h1, "connection_closed", "connection_refused", of="gossip")
        return [e for e in events[seen:]
                if e.get("address", "").startswith(f"{h3.ip}:")
                and not e["address"].endswith(f":{PORT}") and e.get("reason")]

    events = wait_for(dropped, 10, "host1 to log why it dropped the garbage")
    assert "magic" in events[0]["reason"] or "protocol" in events[0]["reason"], events
    after = gossip(h1)
    assert after["pid"] == before["pid"]
    assert {p["name"] for p in after["peers"]} == set(names.values())
    assert set(established(after)) == {names["host2"], names["host3"]}


def test_no_connection_ever_failed_inside_the_actor(lab: Lab) -> None:
    for host in lab.hosts:
        bugs = log_events(host, "connection_failed_internally", "handler_failed", of="gossip")
        assert bugs == [], bugs
