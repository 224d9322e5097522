"""The sleeve across lab hosts with real dockerd: the seed walkthrough between hosts.

host1 <-> host2 <-> host3 (host3 names only host2). Containers: 10.0.1.1 on host1, 10.0.1.2 on
host2, 10.0.1.3 on host3; the second application network 10.0.2.0/24 on host1 and host2.

Every test runs three times: launched with the seed's commands (the fast datapath carries what
it can), with ``--no-fastdp`` (every frame by the sleeve) and with ``-password`` (the encrypted
sleeve).
"""

from __future__ import annotations

import os
import signal
import sys

import pytest

from tests.support import (
    actor,
    actor_status,
    container_pings,
    eventually_pings,
    file_says,
    status,
    wait_for,
    wait_listening,
    weave,
)
from weavenet.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]



MODES = {"seed": (), "sleeve": ("--no-fastdp",), "encrypted": ("-password", "wfvAwt7sj")}


@pytest.fixture(scope="module", params=list(MODES))
def flags(request) -> tuple[str, ...]:
    """The launch flags of this round of the file's tests."""
    return MODES[request.param]


@pytest.fixture(scope="module")
def net(lab3: Lab, flags: tuple[str, ...]):
    h1, h2, h3 = lab3.hosts
    weave(h1, "launch", "10.0.0.1/16", *flags)
    weave(h2, "launch", "10.0.0.2/16", *flags, h1.ip)
    weave(h3, "launch", "10.0.0.3/16", *flags, h2.ip)
    c = {
        "a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
        "a2": weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox"),
        "a3": weave(h3, "run", "10.0.1.3/24", "-t", "-i", "busybox"),
        "b1": weave(h1, "run", "10.0.2.1/24", "-t", "-i", "busybox"),
        "b2": weave(h2, "run", "10.0.2.2/24", "-t", "-i", "busybox"),
    }
    eventually_pings(h1, c["a1"], "10.0.1.2")
    yield lab3, c
    lab3.clear_faults()
    for h in lab3.hosts:
        h.run(["weave", "reset"], check=False)
    for name, cid in c.items():  # the next round starts its own with the same addresses
        lab3.host(f"host{name[1]}").run(["docker", "rm", "-f", cid], check=False)


def test_ping_works_both_ways_across_hosts(net):
    lab, c = net
    h1, h2, _ = lab.hosts
    eventually_pings(h1, c["a1"], "10.0.1.2")
    eventually_pings(h2, c["a2"], "10.0.1.1")


def test_tcp_and_udp_services_across_hosts(net):
    lab, c = net
    h1, h2, _ = lab.hosts
    h1.exec_in_container(c["a1"], ["sh", "-c", "nc -l -p 4422 > /tmp/tcp &"])
    h1.exec_in_container(c["a1"], ["sh", "-c", "nc.openbsd -u -l 5533 > /tmp/udp &"])
    wait_listening(h1, 4422, container=c["a1"])
    wait_listening(h1, 5533, udp=True, container=c["a1"])
    h2.exec_in_container(c["a2"], ["sh", "-c", "echo 'Hello, world.' | nc 10.0.1.1 4422"],
                         timeout=30)
    h2.exec_in_container(c["a2"],
                         ["sh", "-c", "echo 'Hello, world.' | nc.openbsd -u -w1 10.0.1.1 5533"],
                         timeout=30)
    for f in ("tcp", "udp"):
        wait_for(lambda f=f: file_says(h1, c["a1"], f"/tmp/{f}", "Hello, world."), 10,
                 f"the {f} message in a1")


RAW_RECV = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind(("ethwe", 0)); s.settimeout(15)
print("ready", flush=True)
while True:
    data = s.recv(2048)
    if b"weavenet-raw-frame" in data:
        print("got", data[12:14].hex()); break
"""

RAW_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("ethwe", 0))
frame = b"\\xff" * 6 + s.getsockname()[4] + b"\\x88\\xb5" + b"weavenet-raw-frame".ljust(46, b".")
for _ in range(20):  # spread over 4 s: one lost frame must not fail the test
    s.send(frame); time.sleep(0.2)
"""


def test_a_non_ip_frame_crosses(net):
    lab, c = net
    h1, h2, _ = lab.hosts
    p1, p2 = h1.container_pid(c["a1"]), h2.container_pid(c["a2"])
    recv = h1.popen(["nsenter", "-t", str(p1), "-n", sys.executable, "-c", RAW_RECV],
                    stdout=-1, text=True)
    assert recv.stdout.readline().strip() == "ready"
    h2.run(["nsenter", "-t", str(p2), "-n", sys.executable, "-c", RAW_SEND], timeout=30)
    out, _ = recv.communicate(timeout=20)
    assert out.strip() == "got 88b5"


def test_application_networks_stay_isolated_across_hosts(net):
    lab, c = net
    h1, h2, _ = lab.hosts
    eventually_pings(h1, c["b1"], "10.0.2.2")
    assert not container_pings(h1, c["b1"], "10.0.1.2")
    assert not container_pings(h2, c["b2"], "10.0.1.1")


def test_expose_reaches_a_container_on_another_host_and_dnat_exports_it(net):
    """The seed's service export, with exactly its commands: host2 exposes the application
    network and adds one DNAT rule; a client outside (host3's underlay address) reaches the
    service in host1's container through host2. `weave expose` makes the replies find their
    way back (it masquerades what host2 forwards into the network)."""
    lab, c = net
    h1, h2, h3 = lab.hosts
    weave(h2, "expose", "10.0.1.102/24")
    rule = ["PREROUTING", "-p", "tcp", "-i", "eth0", "--dport", "2211", "-j", "DNAT",
            "--to-destination", "10.0.1.1:4423"]
    try:
        assert h2.run(["ping", "-c1", "-W2", "10.0.1.1"], check=False).returncode == 0
        h1.exec_in_container(c["a1"], ["sh", "-c", "nc -l -p 4423 > /tmp/export &"])
        wait_listening(h1, 4423, container=c["a1"])
        h2.run(["iptables", "-t", "nat", "-A", *rule])
        h3.run(["sh", "-c", f"echo 'Hello, world.' | nc -w2 {h2.ip} 2211"], check=False,
               timeout=30)
        wait_for(lambda: file_says(h1, c["a1"], "/tmp/export", "Hello, world."), 10,
                 "the exported service to receive the message")
    finally:
        h2.run(["iptables", "-t", "nat", "-D", *rule], check=False)
        weave(h2, "hide", "10.0.1.102/24")


def test_a_service_on_another_network_is_imported_through_an_exposed_host(net):
    """The seed's service import, with exactly its commands: host1 exposes 10.0.1.101 and
    DNATs 10.0.1.101:3322 to a service on host3's underlay address (`nc -kl 2211`); a container
    on host2 reaches it as 10.0.1.101:3322. host3 has no route to 10.0.1.0/24: `weave expose`
    masquerades what leaves the network through host1."""
    lab, c = net
    h1, h2, h3 = lab.hosts
    weave(h1, "expose", "10.0.1.101/24")
    service = h3.popen(["sh", "-c", "nc -l 2211 > /tmp/imported-$$; cat /tmp/imported-$$"],
                       stdout=-1, text=True)
    rule = ["PREROUTING", "-p", "tcp", "-d", "10.0.1.101", "--dport", "3322", "-j", "DNAT",
            "--to-destination", f"{h3.ip}:2211"]
    h1.run(["iptables", "-t", "nat", "-A", *rule])
    try:
        wait_listening(h3, 2211)
        h2.exec_in_container(c["a2"], ["sh", "-c", "echo 'Hello, world.' | nc 10.0.1.101 3322"],
                             timeout=30)
        out, _ = service.communicate(timeout=20)
        assert "Hello, world." in out
    finally:
        if service.poll() is None:
            service.kill()
        h1.run(["iptables", "-t", "nat", "-D", *rule], check=False)
        weave(h1, "hide", "10.0.1.101/24")
    assert "weave-expose" not in h1.run(["iptables", "-t", "nat", "-S"]).stdout


def test_containers_talk_through_an_intermediate_host(net):
    lab, c = net
    h1, _, h3 = lab.hosts
    lab.cut(h1, h3)
    try:
        eventually_pings(h3, c["a3"], "10.0.1.1", timeout=45)
        eventually_pings(h1, c["a1"], "10.0.1.3")
        h2_name = status(lab.hosts[1])["peer"]["name"]
        h3_name = status(h3)["peer"]["name"]
        # Gossip's status rides on heartbeats, and the direct route may outlive the first
        # ping through host2 by a moment: wait for the route the test is about.
        wait_for(lambda: actor_status(h1, "gossip")["routes"].get(h3_name) == h2_name, 30,
                 "host1's route to host3 via host2")
    finally:
        lab.heal(h1, h3)


def test_a_container_moved_to_another_host_is_reachable_again(net):
    lab, c = net
    h1, h2, h3 = lab.hosts
    m = weave(h1, "run", "10.0.1.50/24", "-t", "-i", "busybox")
    eventually_pings(h2, c["a2"], "10.0.1.50")
    h1.run(["docker", "rm", "-f", m])
    m2 = weave(h3, "run", "10.0.1.50/24", "-t", "-i", "busybox")
    took = eventually_pings(h2, c["a2"], "10.0.1.50", timeout=20)
    assert took < 15
    h3.run(["docker", "rm", "-f", m2])


def test_killed_capture_or_forwarder_resume_within_seconds(net):
    lab, c = net
    h1, _, _ = lab.hosts
    for name in ("capture", "forwarder"):
        pid = actor(h1, name)["pid"]
        os.kill(pid, signal.SIGKILL)
        took = eventually_pings(h1, c["a1"], "10.0.1.2", timeout=20)
        assert took < 5, f"{name}: traffic resumed only after {took:.1f}s"
        assert actor(h1, name)["pid"] != pid


def test_stop_and_launch_resume_cross_host_traffic_without_restarting_containers(net, flags):
    lab, c = net
    h1, h2, _ = lab.hosts
    before = h1.container_pid(c["a1"])
    weave(h1, "stop")
    # Stopping the router leaves the container's interface alone. (Pinging its own address,
    # as this once did, passes whatever the router does.)
    ethwe = h1.exec_in_container(c["a1"], ["ip", "-o", "-4", "addr", "show", "ethwe"]).stdout
    assert "10.0.1.1/24" in ethwe, ethwe
    weave(h1, "launch", "10.0.0.1/16", *flags)
    eventually_pings(h2, c["a2"], "10.0.1.1")
    assert h1.container_pid(c["a1"]) == before


def test_large_frames_cross_a_path_with_a_small_mtu(net, flags):
    lab, c = net
    h1, h2, _ = lab.hosts
    eventually_pings(h1, c["a1"], "10.0.1.2", size=10000)
    # The routers start on an underlay that drops UDP datagrams above 700 bytes, as weave's own
    # test did: the frag test fails and the path MTU search must find the limit.
    weave(h1, "stop")
    weave(h2, "stop")
    lab.drop_udp_larger_than(h2, 700)
    lab.drop_udp_larger_than(h1, 700)
    try:
        weave(h1, "launch", "10.0.0.1/16", *flags)
        weave(h2, "launch", "10.0.0.2/16", *flags, h1.ip)
        eventually_pings(h1, c["a1"], "10.0.1.2", size=10000, timeout=45)

        def small_path() -> dict | None:  # status rides on heartbeats: up to a second behind
            paths = actor_status(h1, "forwarder")["paths"].values()
            path = next(p for p in paths if p["addr"].startswith(h2.ip + ":"))
            return path if path["frag_ok"] is False and path["pmtu"] < 800 else None

        wait_for(small_path, 10, "a path MTU below 800 to host2")
        h1.exec_in_container(c["a1"], ["sh", "-c", "head -c 20000000 /dev/urandom > /tmp/big"])
        want = h1.exec_in_container(c["a1"], ["md5sum", "/tmp/big"]).stdout.split()[0]
        h2.exec_in_container(c["a2"], ["sh", "-c", "nc.openbsd -l 5000 > /tmp/big &"])
        wait_listening(h2, 5000, container=c["a2"])
        h1.exec_in_container(c["a1"], ["sh", "-c", "nc.openbsd -N 10.0.1.2 5000 < /tmp/big"],
                             timeout=120)
        got = h2.exec_in_container(c["a2"], ["md5sum", "/tmp/big"]).stdout.split()[0]
        assert got == want
    finally:
        lab.undrop_udp_larger_than(h1)
        lab.undrop_udp_larger_than(h2)
