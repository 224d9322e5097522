"""Fixtures for running a real router (supervisor and actors) inside a throwaway namespace."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import netns_pings, wait_for

# wait_for: imported from here by older tests
__all__ = ["Router", "RouterPair", "router", "router_pair", "wait_for"]

BIN = Path(sys.executable).parent


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


class Router:
    """One simulated host's router: a namespace, a run dir, a state dir, and the CLI."""

    def __init__(self, base: Path) -> None:
        self.ns = f"wf{uuid.uuid4().hex[:8]}"
        self.base = base
        self.run_dir = base / "run"
        self.state_dir = base / "state"
        self.extra_ns: list[str] = []
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.sh("ip link set lo up")

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, WEAVE_RUN_DIR=str(self.run_dir),
                    WEAVE_STATE_DIR=str(self.state_dir), WEAVE_ROUTER="process",
                    PATH=f"{BIN}:{os.environ.get('PATH', '')}")

    def nsenter(self, *cmd: str, **kw) -> subprocess.CompletedProcess[str]:
        kw.setdefault("timeout", 60)
        return subprocess.run(["nsenter", f"--net=/var/run/netns/{self.ns}", *cmd],
                              capture_output=True, text=True, env=self.env, **kw)

    def sh(self, script: str) -> subprocess.CompletedProcess[str]:
        r = self.nsenter("sh", "-c", script)
        assert r.returncode == 0, r.stderr
        return r

    def weave(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = self.nsenter(str(BIN / "weave"), *args)
        if check:
            assert r.returncode == 0, f"weave {' '.join(args)}: {r.stderr}"
        return r

    def status(self) -> dict:
        return json.loads(self.weave("status", "--json").stdout)

    def actors(self) -> dict[str, dict]:
        return {a["name"]: a for a in self.status()["actors"]}

    def supervisor_pid(self) -> int | None:
        try:
            return int((self.run_dir / "weave.pid").read_text())
        except (OSError, ValueError):
            return None

    def container_ns(self) -> str:
        """A namespace standing in for a container (attach it with netns:PATH)."""
        name = f"{self.ns}c{len(self.extra_ns)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.extra_ns.append(name)
        return f"/var/run/netns/{name}"

    def cleanup(self) -> None:
        pid = self.supervisor_pid()
        self.weave("reset", check=False)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # only if reset could not stop it
        for name in [*self.extra_ns, self.ns]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    _need_root()
    # Short base path: ipc socket paths are limited to 107 bytes.
    base = Path(f"/tmp/wf-{uuid.uuid4().hex[:8]}")
    base.mkdir()
    r = Router(base)
    try:
        yield r
    finally:
        r.cleanup()


@dataclasses.dataclass
class RouterPair:
    """Two routers on an underlay veth (198.18.0.1 and .2), each with a container namespace
    attached at 10.0.1.1 and 10.0.1.2 (``ca``, ``cb``)."""

    a: Router
    b: Router
    ca: str
    cb: str


@contextlib.contextmanager
def router_pair(prefix: str, *launch: str, a_flags: tuple[str, ...] = (),
                b_flags: tuple[str, ...] = ()) -> Iterator[RouterPair]:
    """Launch two routers with ``launch`` flags (and each its own), b naming a, attach a
    container namespace to each, wait for a ping across; everything is removed on exit."""
    _need_root()
    base = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:6]}")  # short: ipc paths are limited
    base.mkdir()
    routers: list[Router] = []
    try:
        for tag in ("a", "b"):
            (base / tag).mkdir()
            routers.append(Router(base / tag))
        a, b = routers
        a.sh(f"ip link add ua type veth peer name ub netns {b.ns}")
        a.sh("ip addr add 198.18.0.1/24 dev ua && ip link set ua up")
        b.sh("ip addr add 198.18.0.2/24 dev ub && ip link set ub up")
        a.weave("launch", *launch, *a_flags)
        b.weave("launch", *launch, *b_flags, "198.18.0.1")
        ca, cb = a.container_ns(), b.container_ns()
        a.weave("attach", "10.0.1.1/24", f"netns:{ca}")
        b.weave("attach", "10.0.1.2/24", f"netns:{cb}")
        wait_for(lambda: netns_pings(ca, "10.0.1.2"), 30, "a ping from a to b")
        yield RouterPair(a, b, ca, cb)
    finally:
        for r in routers:
            r.cleanup()
        shutil.rmtree(base, ignore_errors=True)
