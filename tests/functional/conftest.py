"""Fixtures for running a real router (supervisor and actors) inside a throwaway namespace."""

from __future__ import annotations

import contextlib
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

from tests.support import wait_for

__all__ = ["Router", "router", "wait_for"]  # wait_for: imported from here by older tests

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
