"""The router in its container (`weave launch`'s default where the image is loaded): the seed's
walkthrough across two hosts, the password kept out of sight, Docker's restarts healed, and
stop, launch and reset.

The tests share one two-host lab and run in order: each leaves the routers as the next expects.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    container_pings,
    eventually_pings,
    status,
    wait_for,
    weave,
    weave_result,
)
from weavenet.lab import Host, Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]

PASSWORD = "c0ntainer-s3cret"
TAG_PREFIX = "weavenet/weave:"


@pytest.fixture(scope="module")
def lab(lab2_container: Lab) -> Iterator[Lab]:
    yield lab2_container
    for h in lab2_container.hosts:
        h.run(["weave", "reset"], check=False, timeout=90)


def inspect(host: Host, fmt: str, what: str = "weave") -> str:
    return host.run(["docker", "inspect", "-f", fmt, what]).stdout.strip()


def ready(host: Host, not_pid: int | None = None) -> dict | None:
    """The host's status once every actor runs (under a supervisor other than ``not_pid``)."""
    st = status(host)
    ok = st["pid"] != not_pid and all(a["state"] == "running" for a in st["actors"])
    return st if ok else None


def bridge_ports(host: Host) -> list[str]:
    """Index and name of every port of the weave bridge: what a router restart must keep."""
    out = host.run(["ip", "-o", "link", "show", "master", "weave"]).stdout
    return sorted(" ".join(line.split()[:2]) for line in out.splitlines())


def seed_walkthrough(h1: Host, h2: Host, *password: str) -> tuple[str, str]:
    weave(h1, "launch", "10.0.0.1/16", *password)
    c1 = weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox")
    weave(h2, "launch", "10.0.0.2/16", *password, h1.ip)
    c2 = weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")
    eventually_pings(h1, c1, "10.0.1.2")
    eventually_pings(h2, c2, "10.0.1.1")
    return c1, c2


def test_the_seed_walkthrough_runs_in_router_containers(lab: Lab) -> None:
    h1, h2 = lab.hosts
    seed_walkthrough(h1, h2)
    d1 = weave(h1, "run", "10.0.2.1/24", "-t", "-i", "busybox")
    weave(h2, "run", "10.0.2.2/24", "-t", "-i", "busybox")
    eventually_pings(h1, d1, "10.0.2.2")
    assert not container_pings(h1, d1, "10.0.1.2")
    for h in (h1, h2):
        assert inspect(h, "{{json .Config.Entrypoint}}") == '["weave-supervisor"]'
        assert inspect(h, "{{.Config.Image}}").startswith(TAG_PREFIX)
        assert inspect(h, "{{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} "
                          "{{.HostConfig.RestartPolicy.Name}}") == "host host unless-stopped"
        assert "Router: container" in weave(h, "status")
        assert status(h)["router"] == "container"


def test_docker_logs_weave_shows_the_lines_of_weave_logs(lab: Lab) -> None:
    h1 = lab.hosts[0]
    before = weave(h1, "logs").splitlines()
    r = h1.run(["docker", "logs", "weave"])
    shown = (r.stdout + r.stderr).splitlines()
    after = weave(h1, "logs").splitlines()
    assert shown and all(line.startswith("{") for line in shown)
    assert set(shown) <= set(after)
    # every line weave logs has from this container's start on, docker logs has too
    start = before.index(shown[0])
    assert set(before[start:]) <= set(shown)
    assert {"supervisor", "netconf", "gossip"} <= {line.split('"actor": "')[1].split('"')[0]
                                                   for line in shown}


def files_under(*dirs: Path) -> Iterator[Path]:
    for d in dirs:
        for root, _, names in os.walk(d):
            for n in names:
                yield Path(root) / n


def test_the_password_is_never_shown_and_a_restarted_container_is_still_encrypted(
        lab: Lab) -> None:
    h1, h2 = lab.hosts
    for h in (h1, h2):
        weave(h, "reset")
    c1, c2 = seed_walkthrough(h1, h2, "-password", PASSWORD)
    assert status(h1)["encryption"] is True
    for h in (h1, h2):
        logs = h.run(["docker", "logs", "weave"])
        where = {
            "docker inspect": h.run(["docker", "inspect", "weave"]).stdout,
            "ps": h.run(["ps", "-eo", "args"]).stdout,
            "docker logs": logs.stdout + logs.stderr,
            "weave status": weave(h, "status") + weave(h, "status", "--json"),
            "weave logs": weave(h, "logs"),
        }
        for name, text in where.items():
            assert PASSWORD not in text, f"{h.name}: the password shows in {name}"
        for f in files_under(h.run_dir, h.state_dir):
            if f.is_socket() or PASSWORD.encode() not in f.read_bytes():
                continue
            mode = f.stat().st_mode
            assert stat.S_IMODE(mode) & 0o077 == 0 and f.stat().st_uid == 0, f

    ports = bridge_ports(h1)
    name = status(h1)["peer"]["name"]
    old_pid = status(h1)["pid"]
    h1.run(["docker", "restart", "weave"], timeout=60)
    st = wait_for(lambda: ready(h1, not_pid=old_pid), 30, "host1's restarted router to be ready")
    assert st["peer"]["name"] == name and st["encryption"] is True
    assert bridge_ports(h1) == ports  # the bridge, the TAP and the veths were left alone
    eventually_pings(h2, c2, "10.0.1.1", timeout=15)
    eventually_pings(h1, c1, "10.0.1.2", timeout=15)


def on_weave(host: Host, cidr: str) -> str:
    """The id of the host's container that has ``cidr`` on ethwe."""
    for cid in host.run(["docker", "ps", "-q", "--no-trunc"]).stdout.split():
        r = host.exec_in_container(cid, "ip -o -4 addr show ethwe", check=False)
        if f"inet {cidr} " in r.stdout:
            return cid
    raise AssertionError(f"no container of {host.name} has {cidr}")


def test_a_killed_supervisor_is_restarted_by_docker(lab: Lab) -> None:
    h1, h2 = lab.hosts
    c2 = on_weave(h2, "10.0.1.2/24")
    pid = status(h1)["pid"]
    restarts = int(inspect(h1, "{{.RestartCount}}"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: int(inspect(h1, "{{.RestartCount}}")) == restarts + 1, 30,
             "Docker to restart the router container")
    wait_for(lambda: ready(h1, not_pid=pid), 30, "the restarted router's actors")
    assert status(h1)["encryption"] is True
    eventually_pings(h2, c2, "10.0.1.1", timeout=15)


def test_stop_stops_the_container_local_traffic_flows_and_launch_starts_it_again(
        lab: Lab) -> None:
    h1, h2 = lab.hosts
    c1 = on_weave(h1, "10.0.1.1/24")
    local = weave(h1, "run", "10.0.1.5/24", "-t", "-i", "busybox")
    weave(h1, "stop")
    assert inspect(h1, "{{.State.Status}}") == "exited"
    assert weave_result(h1, "status").returncode != 0
    assert container_pings(h1, local, "10.0.1.1")  # the bridge needs no router
    weave(h1, "launch", "10.0.0.1/16", "-password", PASSWORD)
    assert inspect(h1, "{{.State.Status}}") == "running"
    eventually_pings(h1, c1, "10.0.1.2", timeout=30)


def ethwe(host: Host, container: str) -> tuple[str, str] | None:
    """The container's weave address and MAC, None while it has no ethwe."""
    r = host.exec_in_container(container, "ip -o -4 addr show ethwe && "
                               "cat /sys/class/net/ethwe/address", check=False)
    if r.returncode != 0 or "inet " not in r.stdout:
        return None
    lines = r.stdout.splitlines()
    return lines[0].split("inet ")[1].split()[0], lines[-1].strip()


def test_a_restarted_application_container_is_reattached_and_a_removed_one_forgotten(
        lab: Lab) -> None:
    h1, h2 = lab.hosts
    c1, c2 = on_weave(h1, "10.0.1.1/24"), on_weave(h2, "10.0.1.2/24")
    before = ethwe(h1, c1)
    assert before is not None and before[0] == "10.0.1.1/24"
    # `docker restart`, then stop and start: a new namespace each time, re-attached from
    # Docker's events with the same address and MAC (2 s is the target, 5 s the bound here)
    for cmds in ([["docker", "restart", "-t", "1", c1]],
                 [["docker", "stop", "-t", "1", c1], ["docker", "start", c1]]):
        for cmd in cmds:
            h1.run(cmd, timeout=60)
        assert wait_for(lambda: ethwe(h1, c1), 5, "the container to be re-attached") == before
        eventually_pings(h2, c2, "10.0.1.1", timeout=15)
    assert c1[:12] in weave(h1, "ps")
    # removed: forgotten at once, its address free for another container
    h1.run(["docker", "rm", "-f", c1], timeout=60)
    wait_for(lambda: c1[:12] not in weave(h1, "ps") and
             c1 not in (h1.state_dir / "attachments.json").read_text(), 5,
             "the removed container to be forgotten")
    c3 = weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox")
    eventually_pings(h2, c2, "10.0.1.1", timeout=15)
    assert ethwe(h1, c3) is not None


def test_after_a_reboot_the_router_and_containers_with_a_restart_policy_come_back(
        lab: Lab) -> None:
    h1, h2 = lab.hosts
    c2 = on_weave(h2, "10.0.1.2/24")
    app = weave(h1, "run", "10.0.1.7/24", "--restart", "always", "-t", "-i", "busybox")
    eventually_pings(h2, c2, "10.0.1.7")
    before = ethwe(h1, app)
    name = status(h1)["peer"]["name"]
    lab.reboot(h1)  # dockerd stopped, bridge, veths and the run directory gone, dockerd started
    st = wait_for(lambda: ready(h1), 60, "the router container to come back by its restart "
                  "policy")
    assert st["peer"]["name"] == name and st["encryption"] is True
    assert wait_for(lambda: ethwe(h1, app), 30, "the container to be re-attached") == before
    eventually_pings(h2, c2, "10.0.1.7", timeout=30)


def test_reset_removes_the_container_and_every_trace_but_the_image(lab: Lab) -> None:
    for h in lab.hosts:
        weave(h, "reset")
        names = h.run(["docker", "ps", "-a", "--format", "{{.Names}}"]).stdout.split()
        assert "weave" not in names
        assert h.run(["docker", "images", "-q", "weavenet/weave"]).stdout.strip()
        links = h.run(["ip", "-o", "link"]).stdout
        assert "weave" not in links and "veth" not in links, links
        assert not h.run_dir.exists() and not h.state_dir.exists()


def test_a_missing_image_is_pulled_or_one_line_says_how_to_get_it(lab: Lab) -> None:
    h2 = lab.hosts[1]
    tag = h2.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                  "weavenet/weave"]).stdout.split()[0]
    h2.run(["docker", "rmi", tag])
    r = weave_result(h2, "launch", "10.0.0.2/16", timeout=120)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert tag in lines[0] and "docker pull" in lines[0]
    assert "docker build" in lines[0] and "weave-lab image" in lines[0]
    assert "weave" not in h2.run(["docker", "ps", "-a", "--format", "{{.Names}}"]).stdout.split()
