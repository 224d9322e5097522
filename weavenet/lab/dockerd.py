"""One dockerd per simulated host, started inside the host's network namespace.

Each dockerd gets its own data root, exec root, socket, pid file and config file, so nothing of
one host's Docker is visible to another. dockerd starts its own containerd ("managed"), whose
root and state live under the data and exec roots, so three hosts run three containerds that
never meet. The one exception dockerd makes: if /run/containerd/containerd.sock exists it uses
that system containerd instead; a distinct containerd namespace per host keeps hosts apart even
then.

Networking is switched off (`--bridge=none`, no iptables, no forwarding, no masquerading):
weave provides the container network, and dockerd must not touch the host namespace's firewall.
A container started without `--network` then gets a namespace of its own with only `lo`.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from weavenet.lab import underlay
from weavenet.lab.errors import LabError

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL
READY_TIMEOUT = 60.0
# Containers get this long to stop before SIGKILL when dockerd shuts down; busybox `sh` as
# PID 1 ignores SIGTERM, so the default 15 s would be spent waiting on every down().
SHUTDOWN_TIMEOUT = 2


@dataclass(frozen=True)
class DockerdPaths:
    root: Path  # the host's directory

    @property
    def data_root(self) -> Path:
        return self.root / "docker"

    @property
    def exec_root(self) -> Path:
        return self.root / "exec"

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def config(self) -> Path:
        return self.root / "daemon.json"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def containerd_pidfile(self) -> Path:
        return self.exec_root / "containerd" / "containerd.pid"

    def longest_socket(self) -> Path:
        return self.exec_root / "containerd" / "containerd.sock.ttrpc"


def check_socket_lengths(paths: DockerdPaths) -> None:
    for sock in (paths.socket, paths.longest_socket()):
        if len(str(sock).encode()) > SOCKET_PATH_MAX:
            raise LabError(f"lab base dir too long: unix socket path {sock} exceeds 107 bytes")


def argv(paths: DockerdPaths, containerd_namespace: str) -> list[str]:
    return [
        "dockerd",
        # An empty config file of our own: /etc/docker/daemon.json must not leak in.
        f"--config-file={paths.config}",
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--userland-proxy=false",
        "--storage-driver=vfs",
        f"--shutdown-timeout={SHUTDOWN_TIMEOUT}",
        f"--data-root={paths.data_root}",
        f"--exec-root={paths.exec_root}",
        f"--host=unix://{paths.socket}",
        f"--pidfile={paths.pidfile}",
        f"--containerd-namespace={containerd_namespace}",
        f"--containerd-plugins-namespace={containerd_namespace}-plugins",
    ]


def start(ns: str, paths: DockerdPaths, containerd_namespace: str) -> subprocess.Popen[bytes]:
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.config.write_text("{}\n")
    with open(paths.log, "ab") as log:
        # A session of its own: a Ctrl-C meant for the test runner must not reach dockerd
        # before the lab has had a chance to stop it in order.
        return subprocess.Popen(
            underlay.nsenter(ns, argv(paths, containerd_namespace)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=paths.root,
            start_new_session=True,
        )


def log_tail(paths: DockerdPaths, lines: int = 3) -> str:
    try:
        text = paths.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def connect(paths: DockerdPaths, timeout: float = 60) -> docker.DockerClient:
    return docker.DockerClient(base_url=paths.url, timeout=timeout)


def wait_ready(proc: subprocess.Popen[bytes], paths: DockerdPaths, host: str,
               timeout: float = READY_TIMEOUT) -> None:
    """Wait until the daemon answers a ping; fail early if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None:
            raise LabError(f"dockerd of {host} exited with code {code}: {log_tail(paths)}")
        if paths.socket.exists():
            try:
                with contextlib.closing(connect(paths, timeout=5)) as client:
                    client.ping()
                return
            except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
                pass
        if time.monotonic() >= deadline:
            raise LabError(f"dockerd of {host} not ready after {timeout:.0f}s: {log_tail(paths)}")
        time.sleep(0.1)


def containerd_pid(paths: DockerdPaths) -> int | None:
    try:
        return int(paths.containerd_pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
