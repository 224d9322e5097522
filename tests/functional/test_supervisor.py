"""The supervisor with its real actors: restarts, fd hygiene, crash loops, socket permissions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.functional.conftest import Router
from tests.support import holds_for, wait_for

pytestmark = pytest.mark.root

ACTORS = ("netconf", "capture", "crypto", "forwarder", "gossip")


def kill_and_wait_restart(router: Router, name: str) -> dict:
    before = router.actors()[name]
    os.kill(before["pid"], signal.SIGKILL)

    def restarted():
        a = router.actors()[name]
        ok = a["state"] == "running" and a["pid"] not in (None, before["pid"])
        return a if ok and a["restarts"] == before["restarts"] + 1 else None

    return wait_for(restarted, 20, f"{name} to be restarted")


def link_dump(router: Router) -> list[str]:
    """Bridge ports (index and name) and the bridge's IPv4 addresses: what a restart must keep."""
    out = router.sh("ip -o link show master weave; ip -o -4 addr show dev weave").stdout
    return [" ".join(line.split()[:4]) for line in out.splitlines()]


def container_addrs(netns: str) -> str:
    return subprocess.run(["nsenter", f"--net={netns}", "ip", "-o", "-4", "addr", "show", "ethwe"],
                          capture_output=True, text=True).stdout


def test_killed_actors_are_restarted_and_the_network_is_untouched(router: Router):
    router.weave("launch", "10.0.0.1/16")
    c = router.container_ns()
    router.weave("attach", "10.0.1.1/24", f"netns:{c}")
    kernel_before = link_dump(router)
    addr_before = container_addrs(c)
    assert "10.0.1.1/24" in addr_before
    for name in ACTORS:
        a = kill_and_wait_restart(router, name)
        assert a["restarts"] == 1
    assert link_dump(router) == kernel_before
    addr_after = container_addrs(c)
    assert addr_after == addr_before
    text = router.weave("status").stdout
    assert "10.0.1.1/24" in text and "Actors:" in text


def test_every_actor_runs_with_one_malloc_arena(router: Router):
    router.weave("launch")
    pids = {name: a["pid"] for name, a in router.actors().items()}
    assert set(pids) == set(ACTORS)
    for name, pid in pids.items():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_ARENA_MAX=1" in environ, name


def test_twenty_restarts_keep_the_supervisor_fd_count_stable(router: Router):
    router.weave("launch")
    pid = router.supervisor_pid()
    assert pid is not None
    fds_before = len(os.listdir(f"/proc/{pid}/fd"))
    for i in range(20):
        kill_and_wait_restart(router, ACTORS[i % len(ACTORS)])
    fds_after = len(os.listdir(f"/proc/{pid}/fd"))
    assert fds_after <= fds_before + 2, (fds_before, fds_after)


def test_an_actor_that_crashes_in_a_loop_is_marked_failed(router: Router):
    # Hold the router's TCP port inside its namespace, so gossip fails every time it starts.
    holder = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{router.ns}", sys.executable, "-c",
         "import socket,time; s=socket.create_server(('0.0.0.0', 16783)); print('ok', flush=True);"
         " time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        r = router.weave("launch", "--port", "16783", check=False)
        assert r.returncode == 1
        assert "gossip failed" in r.stderr and "Traceback" not in r.stderr
        g = router.actors()["gossip"]
        assert g["state"] == "failed" and g["pid"] is None
        assert g["restarts"] >= 3
        # The failed actor stays failed, not restarted forever: the point is a span of time,
        # longer than the next backoff delay would be (under 5 s), in which nothing happens.
        restarts = g["restarts"]
        holds_for(lambda: (a := router.actors()["gossip"])["restarts"] == restarts
                  and a["state"] == "failed", 5, f"gossip staying failed after {restarts} restarts")
    finally:
        holder.kill()
        holder.wait()


def test_the_control_socket_refuses_an_unprivileged_user(router: Router):
    router.weave("launch")
    probe = ("import socket,sys\n"
             "s=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('denied')\n"
             "else:\n print('connected')\n")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    r = subprocess.run([*nobody, sys.executable, "-c", probe, str(router.run_dir / "ctl.sock")],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "denied", r.stderr
    # The supervisor's own sockets and pid file are root-only too.
    assert (router.run_dir.stat().st_mode & 0o777) == 0o700
    assert (router.run_dir / "ctl.sock").stat().st_mode & 0o077 == 0


def socket_modes(router: Router) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in router.run_dir.iterdir() if p.is_socket()}


def test_every_socket_in_the_run_dir_is_0600_even_after_restarts(router: Router):
    router.weave("launch")
    modes = socket_modes(router)
    assert {"ctl.sock", "frames-out.sock", "crypto.sock"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes
    for name in ("capture", "crypto"):  # they bind the data-plane sockets again
        kill_and_wait_restart(router, name)
    assert set(socket_modes(router).values()) == {0o600}, socket_modes(router)


def test_debug_raises_log_verbosity_and_logs_are_json_lines(router: Router):
    def events() -> list[dict]:
        lines = router.weave("logs").stdout.splitlines()
        events = [json.loads(x) for x in lines]  # every line is one JSON object
        assert all({"actor", "pid", "inc", "event", "level"} <= set(e) for e in events)
        return events

    def levels() -> set[str]:
        return {e["level"] for e in events()}

    router.weave("launch")
    router.weave("ps")
    # The actors' own info lines are in the log: a debug line about `ps` would be there too.
    wait_for(lambda: sum(e["event"] == "actor_ready" for e in events()) >= 2 * len(ACTORS), 10,
             "every actor's actor_ready line, from itself and from the supervisor")
    assert "debug" not in levels()
    router.weave("stop")
    router.weave("launch", "-debug")
    router.weave("ps")
    wait_for(lambda: "debug" in levels(), 10, "a debug line after launch -debug")


def test_status_when_nothing_runs_says_so_and_exits_1(router: Router):
    r = router.weave("status", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "weave: weave is not running; start it with `weave launch`"


@pytest.mark.parametrize("args", [["launch", "10.0.0.1/33"], ["launch", "10.0.0.1/16", "a b"],
                                  ["launch", "--port", "0"], ["attach", "10.0.1.300/24", "x"],
                                  ["frobnicate"], ["expose"]])
def test_bad_usage_is_one_line_and_exit_2(router: Router, args):
    r = router.weave(*args, check=False)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_forwarder_without_the_tap_keeps_its_udp_side_then_exits_to_be_restarted(
    router: Router,
):
    router.weave("launch")
    router.sh("ip link del weave-tap")  # by hand: netconf makes it only at its start
    before = router.actors()["forwarder"]
    os.kill(before["pid"], signal.SIGKILL)

    def waiting() -> dict | None:
        a = router.actors()["forwarder"]
        ok = a["state"] == "running" and a["pid"] != before["pid"]
        return a if ok and a.get("status", {}).get("tap", "") is None else None

    waiting_one = wait_for(waiting, 10, "a new forwarder, running without the TAP")
    assert ":6783 " in router.sh("ss -Hlun").stdout  # its UDP side is up meanwhile
    restarted = wait_for(lambda: router.actors()["forwarder"]["pid"] != waiting_one["pid"],
                         30, "the forwarder to give up on the TAP and be restarted")
    assert restarted
    logged = [json.loads(line) for line in router.weave("logs").stdout.splitlines()
              if '"tap_unavailable"' in line]
    assert any(r.get("actor") == "forwarder" and r.get("level") == "error" for r in logged)
