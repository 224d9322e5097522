"""The lab itself: simulated hosts reach each other, faults bite and heal, dockerds are separate,
and nothing survives down() — not in the root namespace, not in the process table."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import IPRoute

from tests.support import host_pings, wait_for
from weavenet.lab import Lab, LabError, procs, underlay
from weavenet.lab.lab import LABS_ROOT, unique_prefix

pytestmark = [
    pytest.mark.root,
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
]


def root_netns_snapshot() -> dict[str, list[Any]]:
    with IPRoute() as ipr:
        links = sorted((m["index"], m.get_attr("IFLA_IFNAME")) for m in ipr.get_links())
        addrs = sorted(
            (m["index"], m.get_attr("IFA_ADDRESS"), m["prefixlen"]) for m in ipr.get_addr()
        )
        routes = sorted(
            (str(m.get_attr("RTA_DST")), m["dst_len"], str(m.get_attr("RTA_GATEWAY")),
             m.get_attr("RTA_OIF") or 0, m.get_attr("RTA_TABLE") or 0)
            for m in ipr.get_routes(family=2)
        )
    return {"links": links, "addrs": addrs, "routes": routes}


# --- underlay ---------------------------------------------------------------------------------


def test_every_host_reaches_every_other_over_the_underlay(lab3: Lab) -> None:
    for host in lab3.hosts:
        out = host.run(["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
        assert f"inet {host.ip}/24" in out
    for src in lab3.hosts:
        for dst in lab3.hosts:
            if src is not dst:
                assert host_pings(src, dst.ip), f"{src.name} cannot ping {dst.name}"


def test_each_host_has_its_own_weave_dirs_and_docker_host(lab3: Lab) -> None:
    seen = set()
    for host in lab3.hosts:
        out = host.run('echo "$WEAVE_RUN_DIR $WEAVE_STATE_DIR $DOCKER_HOST"').stdout.split()
        assert out == [str(host.run_dir), str(host.state_dir), host.docker_host]
        assert host.run_dir.is_dir() and host.state_dir.is_dir()
        seen.add(tuple(out))
        # The console scripts of this Python (weave, weave-lab) are on the host's PATH.
        assert host.run("command -v weave-lab", check=False).returncode == 0
    assert len(seen) == 3


def test_run_timeout_kills_the_whole_command_not_just_its_shell(lab3: Lab) -> None:
    host = lab3.host(2)
    with pytest.raises(subprocess.TimeoutExpired):
        host.run("sleep 31 & sleep 32; wait", timeout=0.5)

    def sleepers() -> list[int]:
        found = []
        for pid in procs.in_netns([underlay.ns_file(host.ns)]):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                    found.append(pid)
        return found

    wait_for(lambda: sleepers() == [], 5, "the sleep processes to die")


# --- faults -----------------------------------------------------------------------------------


def test_cut_blocks_traffic_between_two_hosts_until_healed(lab3: Lab) -> None:
    h1, h2, h3 = lab3.hosts
    try:
        lab3.cut(h1, h2)
        assert lab3.faults == [("cut", "host1", "host2")]
        assert not host_pings(h1, h2.ip)
        assert not host_pings(h2, h1.ip)
        assert host_pings(h1, h3.ip) and host_pings(h2, h3.ip)  # only the cut pair is affected
        lab3.heal("host2", 1)
        assert lab3.faults == []
        assert host_pings(h1, h2.ip) and host_pings(h2, h1.ip)
    finally:
        lab3.clear_faults()


def test_firewall_blocks_a_tcp_port_until_removed(lab3: Lab) -> None:
    h1, h2 = lab3.host(1), lab3.host(2)
    port = 5555
    listener = h1.popen(["nc.openbsd", "-lk", str(port)], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)

    def connects() -> bool:
        probe = ["nc.openbsd", "-z", "-w", "1", h1.ip, str(port)]
        return h2.run(probe, check=False, timeout=10).returncode == 0

    try:
        wait_for(connects, 10, "the listener on host1")
        lab3.firewall(h1, "tcp", port)
        assert not connects()
        lab3.unfirewall(h1, "tcp", port)
        assert connects()
    finally:
        lab3.clear_faults()
        listener.kill()
        listener.wait(timeout=10)


UDP_RECEIVER = textwrap.dedent("""
    import json, socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    s.settimeout(5)
    print("ready", flush=True)
    sizes = []
    try:
        while not sizes or sizes[-1] != 100:  # the small datagram is sent last
            sizes.append(len(s.recv(65535)))
    except socket.timeout:
        pass
    print(json.dumps(sizes), flush=True)
""")

UDP_SENDER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for size in (1200, 100):
        s.sendto(b"x" * size, (sys.argv[1], int(sys.argv[2])))
""")


def udp_sizes_received(lab: Lab, port: int) -> list[int]:
    h1, h2 = lab.host(1), lab.host(2)
    receiver = h1.popen([sys.executable, "-c", UDP_RECEIVER, str(port)],
                        stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        h2.run([sys.executable, "-c", UDP_SENDER, h1.ip, str(port)])
        out, _ = receiver.communicate(timeout=10)
    finally:
        receiver.kill()
        receiver.wait(timeout=10)
    return json.loads(out)


def test_drop_udp_larger_than_drops_big_datagrams_but_not_small_ones(lab3: Lab) -> None:
    try:
        lab3.drop_udp_larger_than(1, 1000)  # 1200 + 28 header bytes > 1000 >= 100 + 28
        assert udp_sizes_received(lab3, 5556) == [100]
        lab3.undrop_udp_larger_than(1)
        assert udp_sizes_received(lab3, 5557) == [1200, 100]
    finally:
        lab3.clear_faults()


# --- docker -----------------------------------------------------------------------------------


def test_busybox_runs_in_every_hosts_own_dockerd(lab3: Lab) -> None:
    for host in lab3.hosts:
        assert host.run("docker run --rm busybox echo hi").stdout == "hi\n"
        nc = host.run("docker run --rm busybox nc.openbsd -h 2>&1", check=False)
        assert "OpenBSD netcat" in nc.stdout
    h1, h2 = lab3.host(1), lab3.host(2)
    container = h1.docker().containers.run("busybox", ["sleep", "30"], detach=True)
    try:
        assert container.id in [c.id for c in h1.docker().containers.list()]
        assert container.id not in [c.id for c in h2.docker().containers.list()]
    finally:
        container.remove(force=True)


def test_container_started_without_network_option_gets_only_loopback(lab3: Lab) -> None:
    # With --bridge=none there is no "bridge" network: `docker run` still succeeds, the
    # container's NetworkMode is "default" and its own namespace holds only lo.
    host = lab3.host(3)
    cid = host.run("docker run -d -t -i busybox").stdout.strip()
    try:
        info = host.docker().containers.get(cid).attrs
        assert info["State"]["Running"] and info["HostConfig"]["NetworkMode"] == "default"
        links = host.exec_in_container(cid, "ip -o link").stdout.splitlines()
        assert [line.split(":")[1].strip() for line in links] == ["lo"]
        pid = host.container_pid(cid)
        via_nsenter = host.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"]).stdout
        assert via_nsenter.count("\n") == 1 and ": lo:" in via_nsenter
    finally:
        host.run(["docker", "rm", "-f", cid], check=False)


# --- lifecycle --------------------------------------------------------------------------------


def test_down_leaves_no_namespace_process_or_dir_and_root_netns_is_never_touched(
    lab_factory: Callable[..., Lab],
) -> None:
    before = root_netns_snapshot()
    lab = lab_factory(2)
    assert root_netns_snapshot() == before
    for host in lab.hosts:
        host.run("docker run -d -t -i busybox")
    sleeper = lab.host(1).popen(["sleep", "300"])
    namespaces = [lab.lan_ns, *(h.ns for h in lab.hosts)]
    ours = procs.docker_family_under(lab.base_dir)
    ours |= procs.descendants(ours) | {sleeper.pid}
    refs = procs.refs(ours)
    kinds = {os.path.basename(os.readlink(f"/proc/{r.pid}/exe")) for r in refs}
    assert {"dockerd", "containerd", "containerd-shim-runc-v2", "busybox", "sleep"} <= kinds

    lab.down()
    assert [n for n in namespaces if underlay.exists(n)] == []
    assert [r.pid for r in refs if procs.alive(r)] == []
    assert not lab.base_dir.exists()
    assert root_netns_snapshot() == before
    lab.down()  # idempotent


def test_failed_up_cleans_up_after_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from weavenet.lab import dockerd

    if shutil.which("dockerd") is None:
        pytest.skip("dockerd not installed")
    real_argv = dockerd.argv
    monkeypatch.setattr(dockerd, "argv", lambda *a: [*real_argv(*a), "--no-such-flag"])
    lab = Lab(2, prefix=unique_prefix())
    with pytest.raises(LabError, match="dockerd of host1 exited"):
        lab.up()
    assert not underlay.exists(lab.lan_ns) and not underlay.exists(lab.hosts[0].ns)
    assert not lab.base_dir.exists()
    assert procs.docker_family_under(lab.base_dir) == set()


def weave_lab(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "weavenet.lab.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_weave_lab_cli_builds_uses_and_removes_a_lab_across_invocations() -> None:
    prefix = unique_prefix()
    try:
        assert weave_lab("up", "2", "--no-docker", "--prefix", prefix).returncode == 0
        again = weave_lab("up", "2", "--no-docker", "--prefix", prefix)
        assert again.returncode == 1 and "already up" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1

        status = json.loads(weave_lab("status", "--prefix", prefix, "--json").stdout)
        assert [h["ip"] for h in status[0]["hosts"]] == ["198.18.0.1", "198.18.0.2"]
        shown = weave_lab("exec", "--prefix", prefix, "host2", "--", "ip", "-o", "addr")
        assert shown.returncode == 0 and "inet 198.18.0.2/24" in shown.stdout
        exited = weave_lab("exec", "1", "--prefix", prefix, "--", "sh", "-c", "exit 7")
        assert exited.returncode == 7

        assert weave_lab("cut", "--prefix", prefix, "1", "2").returncode == 0
        assert Lab.load(prefix).faults == [("cut", "host1", "host2")]
        assert weave_lab("exec", "--prefix", prefix, "1", "--", "ping", "-c1", "-W1",
                         "198.18.0.2").returncode == 1

        assert weave_lab("exec", "--prefix", prefix, "9", "--", "true").returncode == 1
        assert weave_lab("up", "0").returncode == 2
        assert weave_lab("down", "--prefix", prefix).returncode == 0
        assert not underlay.exists(f"{prefix}-h1") and not (LABS_ROOT / prefix).exists()
    finally:
        if (LABS_ROOT / prefix).exists():
            Lab.load(prefix).down()
