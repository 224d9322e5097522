"""The mesh on three lab hosts (no dockerd): discovery, routing around a cut, healing, restarts.

host3 names only host2, and host2 only host1; the underlay between host1 and host3 is cut before
launch. The tests run in file order on one shared mesh, each leaving it whole for the next. They
look only at the control plane (`weave status --json`, `weave logs`), never at container traffic.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from weavenet.lab import Host, Lab, LabError
from weavenet.lab.lab import unique_prefix

pytestmark = pytest.mark.root

T = TypeVar("T")
PORT = 6783


def weave(host: Host, *args: str) -> str:
    r = host.run(["weave", *args], check=False, timeout=60)
    assert r.returncode == 0, f"{host.name}: weave {' '.join(args)} failed: {r.stderr}"
    return r.stdout


def router_status(host: Host) -> dict[str, Any]:
    return json.loads(weave(host, "status", "--json"))


def gossip(host: Host) -> dict[str, Any]:
    for actor in router_status(host)["actors"]:
        if actor["name"] == "gossip":
            return {**(actor.get("status") or {}), "pid": actor["pid"], "state": actor["state"]}
    raise AssertionError(f"{host.name} has no gossip actor")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the last observation."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (AssertionError, KeyError, ValueError) as exc:  # router mid-restart
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def established(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{peer name: connection row} of a gossip status's established connections."""
    return {c["peer"]: c for c in st.get("connections", []) if c["state"] == "established"}


def log_events(host: Host, *events: str) -> list[dict[str, Any]]:
    out = []
    for line in weave(host, "logs").splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("actor") == "gossip" and rec.get("event") in events:
                out.append(rec)
    return out


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
    wait_for("every host to list all three peers", lambda: all_list_everyone(lab, names), 10)
    nick = {p["name"]: p["nickname"] for p in gossip(lab.hosts[0])["peers"]}
    assert nick == {names[h.name]: h.name for h in lab.hosts}


def test_routes_go_around_a_cut_link(lab: Lab, names: dict[str, str]) -> None:
    h1 = lab.hosts[0]

    def via_host2() -> dict[str, Any] | None:
        st = gossip(h1)
        return st if st["routes"].get(names["host3"]) == names["host2"] else None

    st = wait_for("host1's route to host3 via host2", via_host2, 10)
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

    wait_for("a direct host1-host3 connection", direct, 25)
    # Duplicate dials (both ends discover each other) settle on exactly one connection.
    rows = [c for c in gossip(h1)["connections"] if c["peer"] == names["host3"]]
    assert len(rows) == 1, rows


def test_a_cut_link_is_marked_lost_and_remade_when_it_heals(
        lab: Lab, names: dict[str, str]) -> None:
    h1, _, h3 = lab.hosts
    lost_before = len(log_events(h1, "connection_lost")), len(log_events(h3, "connection_lost"))
    lab.cut(h1, h3)
    try:
        def both_lost() -> bool:
            return (names["host3"] not in established(gossip(h1))
                    and names["host1"] not in established(gossip(h3)))

        wait_for("both ends to drop the cut connection", both_lost, 20)
        for host, other, before in ((h1, "host3", lost_before[0]), (h3, "host1", lost_before[1])):
            lost = log_events(host, "connection_lost")[before:]
            assert any(e.get("remote") == names[other] and e.get("reason") for e in lost), lost
        # Still one mesh: routes between host1 and host3 now go through host2.
        assert gossip(h1)["routes"].get(names["host3"]) == names["host2"]
        rows = [c for c in gossip(h1)["connections"] if c["address"] == f"{h3.ip}:{PORT}"]
        assert rows and rows[0]["state"] in ("connecting", "failed", "retrying"), rows
    finally:
        lab.heal(h1, h3)

    def remade() -> bool:
        return (names["host3"] in established(gossip(h1))
                and names["host1"] in established(gossip(h3)))

    wait_for("the host1-host3 connection to be remade", remade, 30)


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

    wait_for("host1's new gossip incarnation to rejoin the mesh", whole, 30)


def test_connect_and_forget_change_the_connection_set(lab: Lab) -> None:
    h1 = lab.hosts[0]
    nowhere = "198.18.0.99:6783"  # inside the lab's LAN, where nobody answers

    def row() -> dict[str, Any] | None:
        return next((c for c in gossip(h1)["connections"] if c["address"] == nowhere), None)

    assert row() is None
    weave(h1, "connect", "198.18.0.99")
    failed = wait_for("the unreachable target to fail with a reason",
                      lambda: (r := row()) and r["state"] == "failed" and r["info"] and r, 15)
    assert "time" in failed["info"] or "unreach" in failed["info"].lower(), failed
    weave(h1, "forget", "198.18.0.99")
    wait_for("the forgotten target to disappear", lambda: row() is None, 5)


def test_garbage_on_the_peer_port_is_dropped_with_a_logged_reason(
        lab: Lab, names: dict[str, str]) -> None:
    h1, _, h3 = lab.hosts
    before = gossip(h1)
    seen = len(log_events(h1, "connection_closed", "connection_refused"))
    h3.run(f"head -c 4096 /dev/urandom | nc -w1 {h1.ip} {PORT}", check=False, timeout=15)

    def dropped() -> list[dict[str, Any]]:
        return [e for e in log_events(h1, "connection_closed", "connection_refused")[seen:]
                if e.get("address", "").startswith(f"{h3.ip}:")
                and not e["address"].endswith(f":{PORT}") and e.get("reason")]

    events = wait_for("host1 to log why it dropped the garbage", dropped, 10)
    assert "magic" in events[0]["reason"] or "protocol" in events[0]["reason"], events
    after = gossip(h1)
    assert after["pid"] == before["pid"]
    assert {p["name"] for p in after["peers"]} == set(names.values())
    assert set(established(after)) == {names["host2"], names["host3"]}


def test_no_connection_ever_failed_inside_the_actor(lab: Lab) -> None:
    for host in lab.hosts:
        bugs = log_events(host, "connection_failed_internally", "handler_failed")
        assert bugs == [], bugs
