"""The kernel fast datapath (VXLAN) between lab hosts with real dockerd.

Two hosts launched with the seed's commands: their connection goes to fastdp, the kernel's
VXLAN device on each host has a flood entry towards the other (read with `bridge fdb`, i.e.
netlink, inside the host's namespace), containers talk without their frames touching the
router processes; UDP 6784 blocked between the hosts moves them to the sleeve and traffic goes
on; unblocked, back to fastdp. Encrypted: sleeve, and status says why. Stop, launch and reset
leave the kernel as they should.
"""

from __future__ import annotations

import json

import pytest

from tests.support import (
    actor_status,
    container_pings,
    eventually_pings,
    log_events,
    replies,
    seconds_until,
    status,
    wait_for,
    weave,
    weave_result,
)
from weavenet.lab import Lab
from weavenet.runtime.fastdp import VXLAN_NAME

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.timeout(600)]


def overlay_of(host, peer_name: str) -> dict[str, str]:
    for c in actor_status(host, "gossip").get("connections", []):
        if c.get("peer") == peer_name and c.get("state") == "established":
            return {"path": c.get("overlay"), "reason": c.get("overlay_reason")}
    return {}


def flood_entries(host) -> set[str]:
    r = host.run(["bridge", "-j", "fdb", "show", "dev", VXLAN_NAME], check=False)
    if r.returncode != 0:
        return set()
    return {e["dst"] for e in json.loads(r.stdout or "[]")
            if e.get("mac") == "00:00:00:00:00:00" and "dst" in e}


def has_device(host) -> bool:
    return host.run(["ip", "link", "show", VXLAN_NAME], check=False).returncode == 0


def captured(host) -> int:
    return int(actor_status(host, "forwarder").get("counters", {}).get("captured", 0))


@pytest.fixture(scope="module")
def net(lab2: Lab):
    h1, h2 = lab2.hosts
    weave(h1, "launch", "10.0.0.1/16")
    weave(h2, "launch", "10.0.0.2/16", h1.ip)
    c = {"a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
         "a2": weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")}
    names = {h.name: status(h)["peer"]["name"] for h in (h1, h2)}
    yield lab2, c, names
    lab2.clear_faults()
    for h in lab2.hosts:
        h.run(["weave", "reset"], check=False)


def wait_path(host, peer: str, path: str, timeout: float) -> float:
    return seconds_until(lambda: overlay_of(host, peer).get("path") == path, timeout,
                         f"{host.name}'s connection to {peer} on {path}")


def test_default_launch_uses_fastdp_with_kernel_entries_towards_the_peer(net):
    lab, c, names = net
    h1, h2 = lab.hosts
    wait_path(h1, names[h2.name], "fastdp", 20)
    wait_path(h2, names[h1.name], "fastdp", 20)
    wait_for(lambda: flood_entries(h1) == {h2.ip} and flood_entries(h2) == {h1.ip}, 10,
             "the flood entries towards each other")
    assert "fastdp" in weave(h1, "status")
    eventually_pings(h1, c["a1"], "10.0.1.2")
    eventually_pings(h2, c["a2"], "10.0.1.1")


def test_fastdp_frames_never_touch_the_router_processes(net):
    lab, c, names = net
    h1, h2 = lab.hosts
    wait_path(h1, names[h2.name], "fastdp", 20)
    eventually_pings(h1, c["a1"], "10.0.1.2")
    before = captured(h1), captured(h2)
    r = h1.exec_in_container(c["a1"], ["ping", "-c", "100", "-i", "0.01", "-q", "10.0.1.2"],
                             check=False, timeout=60)
    assert replies(r.stdout) == 100
    wait_for(lambda: actor_status(h1, "forwarder").get("counters") is not None, 5, "status")
    after = captured(h1), captured(h2)
    # 200 frames crossed; at most a few ARP broadcasts reached the sleeve (status is periodic,
    # so read it after one more heartbeat's worth of time)
    assert after[0] - before[0] < 10 and after[1] - before[1] < 10, (before, after)


def test_blocked_udp_6784_falls_back_to_the_sleeve_and_back(net):
    lab, c, names = net
    h1, h2 = lab.hosts
    wait_path(h1, names[h2.name], "fastdp", 20)
    lab.block(h1, h2, "udp", 6784)
    try:
        took = wait_path(h1, names[h2.name], "sleeve", 15)
        assert took <= 6  # the switch is within 3 s; status is read through heartbeats
        assert "no fastdp heartbeat" in overlay_of(h1, names[h2.name])["reason"]
        wait_for(lambda: flood_entries(h1) == set(), 10, "the flood entry to go")
        eventually_pings(h1, c["a1"], "10.0.1.2", timeout=20)
        r = h1.exec_in_container(c["a1"], ["ping", "-c", "20", "-i", "0.1", "-q", "10.0.1.2"],
                                 check=False, timeout=60)
        assert replies(r.stdout) == 20
        switches = [e for e in log_events(h1, "overlay_switch")
                    if e.get("remote") == names[h2.name]]
        assert switches and switches[-1]["path"] == "sleeve"
        assert "no fastdp heartbeat" in switches[-1]["why"]
    finally:
        lab.unblock(h1, h2, "udp", 6784)
    took = wait_path(h1, names[h2.name], "fastdp", 25)
    assert took <= 20
    wait_for(lambda: flood_entries(h1) == {h2.ip}, 10, "the flood entry back")
    eventually_pings(h1, c["a1"], "10.0.1.2")


def test_stop_removes_the_kernel_path_and_launch_brings_it_back(net):
    lab, c, names = net
    h1, h2 = lab.hosts
    wait_path(h1, names[h2.name], "fastdp", 20)
    weave(h1, "stop")
    try:
        assert not has_device(h1)
        assert not container_pings(h2, c["a2"], "10.0.1.1")
    finally:
        weave(h1, "launch", "10.0.0.1/16", h2.ip)
    wait_path(h1, names[h2.name], "fastdp", 30)
    eventually_pings(h2, c["a2"], "10.0.1.1")


def test_no_fastdp_uses_the_sleeve_and_says_why(net):
    lab, c, names = net
    h1, h2 = lab.hosts
    weave(h2, "stop")
    r = h2.run(["env", "WEAVE_NO_FASTDP=1", "weave", "launch", "10.0.0.2/16", h1.ip],
               check=False, timeout=90)
    assert r.returncode == 0, r.stderr
    try:
        wait_for(lambda: overlay_of(h2, names[h1.name]).get("reason") == "--no-fastdp", 30,
                 "h2's connection on the sleeve because of --no-fastdp")
        wait_for(lambda: "does not offer fastdp" in (
            overlay_of(h1, names[h2.name]).get("reason") or ""), 30, "h1 to see why")
        assert not has_device(h2)
        eventually_pings(h1, c["a1"], "10.0.1.2")
    finally:
        weave(h2, "stop")
        weave(h2, "launch", "10.0.0.2/16", h1.ip)


def test_encrypted_connections_use_the_sleeve(lab_factory):
    lab = lab_factory(2)
    h1, h2 = lab.hosts
    weave(h1, "launch", "10.0.0.1/16", "-password", "wfvAwt7sj")
    weave(h2, "launch", "10.0.0.2/16", "-password", "wfvAwt7sj", h1.ip)
    a1 = weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox")
    weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")
    n2 = status(h2)["peer"]["name"]
    eventually_pings(h1, a1, "10.0.1.2")
    wait_for(lambda: overlay_of(h1, n2) == {"path": "sleeve", "reason": "encrypted"}, 20,
             "the encrypted connection on the sleeve")
    assert not has_device(h1)
    assert "sleeve (encrypted)" in weave(h1, "status")


def test_reset_leaves_no_vxlan_device(net):
    lab, _, _ = net
    h1, h2 = lab.hosts
    assert has_device(h1)
    assert weave_result(h1, "reset").returncode == 0
    assert not has_device(h1)
