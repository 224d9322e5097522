"""The supervisor as PID 1 of a PID namespace, as it is in a container with a PID namespace of its
own: it reaps what is reparented to it (no zombies) and stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.conftest import BIN, Router
from tests.support import wait_for

pytestmark = pytest.mark.root


def children(pid: int) -> dict[int, str]:
    """The children of a process (machine pids) and their state letter (Z: a zombie)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out[int(entry)] = fields[0]
    return out


def zombies(pid: int) -> list[int]:
    return [c for c, state in children(pid).items() if state == "Z"]


@pytest.fixture
def pid1(router: Router) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`weave-supervisor` as PID 1 of a new PID namespace (and /proc), in the router's network
    namespace: the unshare process, and the supervisor's pid as the machine sees it."""
    proc = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{router.ns}", "unshare", "--pid", "--fork",
         "--mount-proc", str(BIN / "weave-supervisor"), "--run-dir", str(router.run_dir),
         "--state-dir", str(router.state_dir)],
        env=router.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # nsenter execs unshare, whose one child is the supervisor
        sup = wait_for(lambda: next(iter(children(proc.pid)), None), 10, "the supervisor")
        yield proc, sup
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the namespace dies with its PID 1
        proc.wait(10)
        # the pid file says 1 (the supervisor's own view): never let `weave reset` signal it
        (router.run_dir / "weave.pid").unlink(missing_ok=True)


def all_running(router: Router) -> dict | None:
    st = router.status()
    return st if all(a["state"] == "running" for a in st["actors"]) else None


def test_the_supervisor_as_pid_1_reaps_orphans_and_killed_actors(router: Router, pid1) -> None:
    proc, sup = pid1
    st = wait_for(lambda: all_running(router), 30, "the actors to run")
    assert st["pid"] == 1
    # A process whose parent exits is reparented to its namespace's PID 1, as the tools a
    # killed actor was running would be; it must not stay a zombie when it exits.
    subprocess.run(["nsenter", "-t", str(sup), "-p", "-m", "sh", "-c", "sleep 2 & exit 0"],
                   check=True, timeout=10)
    wait_for(lambda: len(children(sup)) == 6, 5, "the orphan to be reparented to PID 1")
    wait_for(lambda: len(children(sup)) == 5 and not zombies(sup), 10,
             "the orphan to be reaped", interval=0.2)
    # A killed actor is reaped (and restarted), not left a zombie.
    victim = next(iter(children(sup)))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in children(sup), 10, "the killed actor to be reaped")
    wait_for(lambda: all_running(router), 30, "the actor to be restarted")
    assert not zombies(sup)


def test_the_supervisor_as_pid_1_stops_cleanly_on_sigterm(router: Router, pid1) -> None:
    proc, sup = pid1
    wait_for(lambda: all_running(router), 30, "the actors to run")
    actors = list(children(sup))
    assert len(actors) == 5
    os.kill(sup, signal.SIGTERM)
    assert proc.wait(15) == 0  # unshare exits with its child's status
    for pid in actors:
        assert not Path(f"/proc/{pid}").exists()
    assert not (router.run_dir / "weave.pid").exists()
    assert not (router.run_dir / "ctl.sock").exists()
    log = (router.state_dir / "weave.log").read_text()
    assert '"event": "router_stopped"' in log
