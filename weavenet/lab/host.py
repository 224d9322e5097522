"""A simulated host: a network namespace with its own dockerd and weave directories.

Commands run "on" a host run in its network namespace (via nsenter) with an environment that
points weave and docker at that host's directories and daemon; the mount namespace, and so the
filesystem, is the machine's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import docker

from weavenet.lab import dockerd, underlay
from weavenet.lab.errors import LabError

Command = str | Sequence[str]


class CommandFailed(subprocess.CalledProcessError):
    """A command run on a host exited non-zero; str() includes the tail of its stderr."""

    def __init__(self, host: str, returncode: int, cmd: list[str], output: str, stderr: str):
        super().__init__(returncode, cmd, output, stderr)
        self.host = host

    def __str__(self) -> str:
        tail = (self.stderr or self.output or "").strip().splitlines()[-3:]
        detail = f": {' | '.join(tail)}" if tail else ""
        return f"on {self.host}: {' '.join(self.cmd)} exited {self.returncode}{detail}"


def _console_scripts_dirs() -> list[str]:
    dirs = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable)]
    return list(dict.fromkeys(d for d in dirs if d))


def as_argv(cmd: Command) -> list[str]:
    return ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)


class Host:
    """One simulated host. Created by Lab; `index` counts from 1 and names it ("host1")."""

    def __init__(self, index: int, ns: str, ip: str, directory: Path, docker_enabled: bool,
                 track: Callable[[subprocess.Popen[Any], str], None],
                 nat: tuple[str, str] | None = None, router: str = "process"):
        self.index = index
        self.name = f"host{index}"
        self.ns = ns
        self.ip = ip
        # Behind NAT: (router namespace, the router's LAN address). Others see our packets come
        # from lan_ip and cannot dial ip (a private address only the router reaches).
        self.router_ns, self.lan_ip = nat if nat is not None else (None, ip)
        self.dir = directory
        self.docker_enabled = docker_enabled
        self.router = router  # `weave launch`'s default here (WEAVE_ROUTER)
        self._track = track
        self._client: docker.DockerClient | None = None

    def __repr__(self) -> str:
        nat = f", behind NAT {self.lan_ip}" if self.router_ns else ""
        return f"Host({self.name}, ns={self.ns}, ip={self.ip}{nat})"

    @property
    def run_dir(self) -> Path:
        return self.dir / "run"

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def docker_paths(self) -> dockerd.DockerdPaths:
        return dockerd.DockerdPaths(self.dir)

    @property
    def docker_host(self) -> str:
        return self.docker_paths.url

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        system_path = env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":")
        path = [*_console_scripts_dirs(), *system_path]
        env["PATH"] = ":".join(dict.fromkeys(p for p in path if p))
        env["WEAVE_RUN_DIR"] = str(self.run_dir)
        env["WEAVE_STATE_DIR"] = str(self.state_dir)
        # Lab hosts share the machine's hostname; a nickname per host keeps `weave status` legible.
        env["WEAVE_NICKNAME"] = self.name
        # Set even without docker: an unset DOCKER_HOST would mean the machine's own daemon.
        env["DOCKER_HOST"] = self.docker_host
        env["WEAVE_ROUTER"] = self.router
        return env

    def argv(self, cmd: Command) -> list[str]:
        """The argv that runs cmd in this host's network namespace."""
        return underlay.nsenter(self.ns, as_argv(cmd))

    def run(self, cmd: Command, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run cmd (argv list, or a string for `sh -c`) on this host and capture its output."""
        argv = self.argv(cmd)
        # A session of its own so a timeout can kill the whole group (`sh -c` children too).
        with subprocess.Popen(
            argv,
            env=self.env(),
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise
        if check and proc.returncode != 0:
            raise CommandFailed(self.name, proc.returncode, as_argv(cmd), out, err)
        return subprocess.CompletedProcess(as_argv(cmd), proc.returncode, out, err)

    def popen(self, cmd: Command, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start cmd on this host in the background. The caller stops it (by pid); the lab
        also kills it on down(). Keyword arguments go to subprocess.Popen."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("env", self.env())
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.argv(cmd), **kwargs)
        self._track(proc, f"popen on {self.name}")
        return proc

    def docker(self) -> docker.DockerClient:
        """A Docker SDK client for this host's dockerd (cached; closed by Lab.down)."""
        if not self.docker_enabled:
            raise LabError(f"{self.name} has no dockerd (lab started without docker)")
        if self._client is None:
            self._client = dockerd.connect(self.docker_paths)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def exec_in_container(self, container: str, cmd: Command, check: bool = True,
                          timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`docker exec` cmd in a container of this host (a string runs under `sh -c`)."""
        return self.run(["docker", "exec", container, *as_argv(cmd)], check=check, timeout=timeout)

    def container_pid(self, container: str) -> int:
        """PID of a running container's init, for `nsenter -t PID -n`."""
        pid = int(self.docker().containers.get(container).attrs["State"]["Pid"])
        if pid <= 0:
            raise LabError(f"container {container} on {self.name} is not running")
        return pid
