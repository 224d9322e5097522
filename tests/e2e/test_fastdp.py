"""The kernel fast datapath (VXLAN) between lab hosts with real dockerd.

Two hosts launched with the seed's commands: their connection goes to fastdp, the kernel's
VXLAN device on each host has a flood entry towards the other (read with `bridge fdb`, i.e.
netlink, inside the host's namespace), containers talk without their frames touching the
router processes; UDP 6784 blocked between the hosts moves them to the sleeve and traffic goes
on; unblocked, back to fastdp. Encrypted: sleeve, and status says why. Stop, launch and reset
leave the kernel as they should.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import time

import pytest

from tests.support import (
    actor,
    actor_status,
    container_pings,
    eventually_pings,
    launch_mesh,
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


def when(event: dict) -> float:
    """A log record's time (UTC, ISO 8601) as a Unix time."""
    return datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def bridge_port_of(host, mac: str) -> str | None:
    out = host.run(["bridge", "-j", "fdb", "show", "br", "weave"]).stdout
    return next((e.get("ifname") for e in json.loads(out or "[]") if e.get("mac") == mac), None)


def mac_of(host, container: str) -> str:
    return host.exec_in_container(container, ["cat", "/sys/class/net/ethwe/address"]).stdout.strip()


def kernel_carries(lab: Lab, c: dict[str, str]) -> bool:
    """Each host's bridge sends the other container's MAC to the VXLAN port (not the TAP)."""
    h1, h2 = lab.hosts
    mac = {k: mac_of(h, c[k]) for k, h in (("a1", h1), ("a2", h2))}
    return (bridge_port_of(h1, mac["a2"]) == VXLAN_NAME
            and bridge_port_of(h2, mac["a1"]) == VXLAN_NAME)


def has_device(host) -> bool:
    return host.run(["ip", "link", "show", VXLAN_NAME], check=False).returncode == 0


def captured(host) -> int:
    return int(actor_status(host, "forwarder").get("counters", {}).get("captured", 0))


@pytest.fixture(scope="module")
def net(lab2: Lab):
    h1, h2 = lab2.hosts
    names = launch_mesh(lab2.hosts)  # the seed's launches: host2 names host1
    c = {"a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
         "a2": weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")}
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
    # the container MTU is the underlay's (1500 in the lab) - 50, and full frames cross
    mtu = h1.exec_in_container(c["a1"], ["cat", "/sys/class/net/ethwe/mtu"]).stdout.strip()
    assert mtu == "1450"
    assert container_pings(h1, c["a1"], "10.0.1.2", size=1450 - 28)


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
    blocked_at = time.time()
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
        # frames of the fastdp MTU still get through the sleeve (PMTU signals, fragments)
        wait_for(lambda: container_pings(h1, c["a1"], "10.0.1.2", size=1450 - 28), 15,
                 "a full-size ping over the sleeve")
        switches = [e for e in log_events(h1, "overlay_switch")
                    if e.get("remote") == names[h2.name]]
        assert switches and switches[-1]["path"] == "sleeve"
        assert "no fastdp heartbeat" in switches[-1]["why"]
        # the bound, from the router's own log (status lags by a heartbeat)
        assert when(switches[-1]) - blocked_at <= 3.0
    finally:
        unblocked_at = time.time()
        lab.unblock(h1, h2, "udp", 6784)
    wait_path(h1, names[h2.name], "fastdp", 25)
    back = [e for e in log_events(h1, "overlay_switch")
            if e.get("remote") == names[h2.name] and e["path"] == "fastdp"]
    assert when(back[-1]) - unblocked_at <= 15.0
    wait_for(lambda: flood_entries(h1) == {h2.ip}, 10, "the flood entry back")
    # the flow that went by the sleeve meanwhile (MACs learned on the TAP) moves to the kernel
    wait_for(lambda: container_pings(h1, c["a1"], "10.0.1.2") and kernel_carries(lab, c), 15,
             "both bridges to send the containers' frames by VXLAN again")


def test_a_path_that_drops_full_size_frames_is_never_fastdp_and_says_path_mtu(net):
    """The underlay between the hosts drops UDP above 1000 bytes: the full-size heartbeat
    (the container MTU, 1450) never arrives while the small one does, so the connection leaves
    fastdp and status says the path MTU is too small; traffic goes on by the sleeve."""
    lab, c, names = net
    h1, h2 = lab.hosts
    wait_path(h1, names[h2.name], "fastdp", 20)
    try:
        for h in (h1, h2):
            lab.drop_udp_larger_than(h, 1000)
        wait_path(h1, names[h2.name], "sleeve", 15)
        for h, peer in ((h1, h2), (h2, h1)):
            wait_for(lambda h=h, peer=peer: overlay_of(h, names[peer.name]).get("reason")
                     == "path MTU too small for the container MTU", 10,
                     f"{h.name} to say the path MTU is too small")
        wait_for(lambda: flood_entries(h1) == set(), 10, "the flood entry to go")
        eventually_pings(h1, c["a1"], "10.0.1.2", timeout=20)
        switches = [e for e in log_events(h1, "overlay_switch")
                    if e.get("remote") == names[h2.name]]
        assert switches[-1]["path"] == "sleeve" and "path MTU" in switches[-1]["why"]
    finally:
        for h in (h1, h2):
            lab.undrop_udp_larger_than(h)
    wait_path(h1, names[h2.name], "fastdp", 25)
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


@pytest.mark.parametrize("name", ["capture", "forwarder", "crypto", "netconf", "gossip"])
def test_kill_9_of_an_actor_does_not_interrupt_fastdp_traffic(net, name):
    """A ping every 10 ms between containers on fastdp peers while one actor of host1 is
    killed: no packet lost (the kernel carries them); gossip, which re-handshakes every peer,
    costs at most 1 s."""
    lab, c, names = net
    h1, h2 = lab.hosts
    wait_path(h1, names[h2.name], "fastdp", 30)
    wait_path(h2, names[h1.name], "fastdp", 30)
    # flows that began on the sleeve (earlier tests) are moved to the kernel by the first frames
    wait_for(lambda: container_pings(h1, c["a1"], "10.0.1.2") and kernel_carries(lab, c), 15,
             "both bridges to send the containers' frames by VXLAN")
    pinger = h1.popen(["docker", "exec", c["a1"], "ping", "-q", "-c", "400", "-i", "0.01",
                       "10.0.1.2"], stdout=-1, text=True)
    try:
        time.sleep(0.5)  # the pings are flowing when the actor dies
        pid = actor(h1, name)["pid"]
        os.kill(pid, signal.SIGKILL)
        out, _ = pinger.communicate(timeout=60)
    finally:
        if pinger.poll() is None:
            pinger.kill()
    lost = 400 - replies(out)
    assert lost <= (100 if name == "gossip" else 0), (name, out)
    wait_for(lambda: actor(h1, name)["pid"] not in (pid, None), 20, f"a new {name}")
    wait_path(h1, names[h2.name], "fastdp", 30)


def test_reset_leaves_no_vxlan_device(net):
    lab, _, _ = net
    h1, h2 = lab.hosts
    assert has_device(h1)
    assert weave_result(h1, "reset").returncode == 0
    assert not has_device(h1)


COUNT_RECV = """
import collections, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind(("ethwe", 0)); s.settimeout(0.5)
print("ready", flush=True)
seen = collections.Counter()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        data = s.recv(2048)
    except TimeoutError:
        continue
    if data[14:24] == b"weavenet-b":
        seen[data[24:40].decode().strip()] += 1
print(" ".join(f"{k}={v}" for k, v in sorted(seen.items())), flush=True)
"""

COUNT_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("ethwe", 0))
tag = sys.argv[1]
for i in range(20):
    body = (b"weavenet-b" + f"{tag}-{i:03d}".ljust(16).encode()).ljust(46, b".")
    s.send(b"\\xff" * 6 + s.getsockname()[4] + b"\\x88\\xb5" + body)
    time.sleep(0.05)
"""


def broadcast_counts(lab: Lab, containers: dict[str, str], sender: int, tag: str) -> list[dict]:
    """20 numbered broadcasts from host `sender`'s container, counted at every other host's."""
    import sys

    procs = []
    for i, h in enumerate(lab.hosts):
        if i == sender:
            continue
        pid = h.container_pid(containers[h.name])
        p = h.popen(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", COUNT_RECV, "6"],
                    stdout=-1, text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
    h = lab.hosts[sender]
    pid = h.container_pid(containers[h.name])
    h.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", COUNT_SEND, tag], timeout=30)
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=30)
        out.append(dict(kv.split("=") for kv in text.split()))
    return out


def test_broadcasts_reach_every_container_exactly_once_in_a_fastdp_and_sleeve_mix(lab3):
    """host1-host2 and host2-host3 on fastdp; host1-host3 first on the sleeve (UDP 6784 blocked
    between them), then not connected at all (cut: relayed through host2)."""
    lab = lab3
    h1, h2, h3 = lab.hosts
    names = launch_mesh(lab.hosts)
    containers = {h.name: weave(h, "run", f"10.0.1.{i + 1}/24", "-t", "-i", "busybox")
                  for i, h in enumerate(lab.hosts)}
    try:
        lab.block(h1, h3, "udp", 6784)
        wait_path(h1, names[h2.name], "fastdp", 30)
        wait_path(h3, names[h2.name], "fastdp", 30)
        wait_for(lambda: overlay_of(h1, names[h3.name]).get("path") == "sleeve"
                 and "heartbeat" in (overlay_of(h1, names[h3.name]).get("reason") or ""), 30,
                 "host1-host3 on the sleeve")
        for sender in range(3):
            for counts in broadcast_counts(lab, containers, sender, f"m{sender}"):
                assert len(counts) == 20 and set(counts.values()) == {"1"}, (sender, counts)
        lab.cut(h1, h3)
        wait_for(lambda: overlay_of(h1, names[h3.name]) == {}, 60, "host1-host3 gone")
        eventually_pings(h1, containers[h1.name], "10.0.1.3", timeout=45)
        for sender in range(3):
            for counts in broadcast_counts(lab, containers, sender, f"c{sender}"):
                assert len(counts) == 20 and set(counts.values()) == {"1"}, (sender, counts)
    finally:
        lab.clear_faults()
        for h in lab.hosts:
            h.run(["weave", "reset"], check=False)



def test_a_container_moved_to_another_fastdp_host_is_reachable_within_2_s(lab3):
    """All three hosts on fastdp: a container removed from host1 and started again with the
    same address on host3 answers host2's container within 2 s of `weave run` returning."""
    lab = lab3
    h1, h2, h3 = lab.hosts
    names = launch_mesh(lab.hosts)
    a2 = weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")
    try:
        for h, peer in ((h1, h2), (h2, h1), (h2, h3), (h3, h2)):
            wait_path(h, names[peer.name], "fastdp", 30)
        m = weave(h1, "run", "10.0.1.50/24", "-t", "-i", "busybox")
        eventually_pings(h2, a2, "10.0.1.50")
        mac = mac_of(h1, m)
        wait_for(lambda: bridge_port_of(h2, mac) == VXLAN_NAME, 10,
                 "host2's bridge to reach the container through the kernel")
        h1.run(["docker", "rm", "-f", m])
        m2 = weave(h3, "run", "10.0.1.50/24", "-t", "-i", "busybox")
        took = eventually_pings(h2, a2, "10.0.1.50", timeout=20)
        assert took < 2, f"the moved container answered only after {took:.1f}s"
        h3.run(["docker", "rm", "-f", m2])
    finally:
        for h in lab.hosts:
            h.run(["weave", "reset"], check=False)
