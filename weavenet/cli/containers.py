"""Finding the network namespace of a container, and `weave run`'s `docker run -d`.

A target is a Docker container (id or name, through the Docker SDK, honouring DOCKER_HOST),
``pid:N`` or ``netns:/path`` for namespaces outside Docker.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from typing import Any

from weavenet.runtime.address import shown
from weavenet.runtime.bus import FAILED, USAGE, BusError
from weavenet.runtime.control import MAX_CONTAINER_ID, MAX_PATH, MAX_PID, Target


def docker_client(timeout: float = 30, purpose: str = "") -> Any:
    """A Docker client (DOCKER_HOST honoured), or BusError saying in one line why there is
    none (``purpose``: what it was for, e.g. " for the router container")."""
    import docker  # imported late: `weave status` and process mode never pay for it

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:
        raise BusError(FAILED, f"cannot reach Docker{purpose}: {first_line(exc)}") from None
    return client


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


# Docker's own rule for container names (an id, or a prefix of one, matches it too).
_CONTAINER_NAME = re.compile(r"/?[A-Za-z0-9][A-Za-z0-9_.-]*")
_PID = re.compile(r"[1-9][0-9]{0,6}")


def check_spec(spec: str) -> str:
    """``spec`` if it is a well-formed container id or name, ``pid:N`` or ``netns:/path``;
    otherwise a usage error (exit status 2) that shows it escaped, on one line."""
    if spec.startswith("pid:"):
        if not _PID.fullmatch(spec[4:]) or int(spec[4:]) > MAX_PID:
            raise BusError(USAGE, f"invalid pid in {shown(spec)} (want pid:N, 1 <= N <= "
                           f"{MAX_PID})")
    elif spec.startswith("netns:"):
        path = spec[6:]
        if not path.startswith("/") or len(path) > MAX_PATH or not path.isprintable():
            raise BusError(USAGE, f"invalid namespace path in {shown(spec)} (want netns:/path)")
    elif len(spec) > MAX_CONTAINER_ID or not _CONTAINER_NAME.fullmatch(spec):
        raise BusError(USAGE, f"{shown(spec)} is not a container id or name")
    return spec


def resolve(spec: str) -> Target:
    check_spec(spec)
    if spec.startswith("pid:"):
        pid = int(spec[4:])
        path = f"/proc/{pid}/ns/net"
        if not os.path.exists(path):
            raise BusError(FAILED, f"no process with pid {pid}")
        return Target(netns=path, key=spec, label=spec, pid=pid)
    if spec.startswith("netns:"):
        path = spec[6:]
        if not os.path.exists(path):
            raise BusError(FAILED, f"no network namespace at {shown(path)}")
        return Target(netns=path, key=spec, label=spec)
    import docker.errors

    client = docker_client()
    try:
        c = client.containers.get(spec)
    except docker.errors.NotFound:
        raise BusError(FAILED, f"no such container: {shown(spec)}") from None
    except docker.errors.APIError as exc:
        raise BusError(FAILED, f"docker: {first_line(exc)}") from None
    state = c.attrs.get("State", {})
    pid = int(state.get("Pid") or 0)
    if not state.get("Running") or pid <= 0:
        raise BusError(FAILED, f"container {shown(spec)} is not running")
    return Target(netns=f"/proc/{pid}/ns/net", key=c.id, label=spec, container_id=c.id, pid=pid)


def _has_network_flag(args: list[str]) -> bool:
    return any(a in ("--net", "--network") or a.startswith(("--net=", "--network="))
               for a in args)


def docker_run(args: list[str]) -> str:
    """`docker run -d ARGS`; returns the new container's id. stderr passes through to the user."""
    exe = shutil.which("docker")
    if exe is None:
        raise BusError(FAILED, "the docker command is not installed")
    extra: list[str] = []
    if not _has_network_flag(args):
        # A daemon without its default bridge (--bridge=none) cannot start a container on the
        # default network; weave's interface is added on top of whatever Docker provides.
        client = docker_client()
        if not client.networks.list(names=["bridge"]):
            extra = ["--network=none"]
    proc = subprocess.run([exe, "run", "-d", *extra, *args], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        reason = docker_error(proc.stderr) or f"docker run failed ({proc.returncode})"
        raise BusError(FAILED, reason)
    return proc.stdout.strip().splitlines()[-1]


def docker_error(stderr: str) -> str:
    """The one line of `docker run`'s stderr that says what went wrong."""
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    for line in lines:
        if line.startswith("docker: "):
            return line
    noise = ("WARNING", "Usage:", "Run 'docker", "See 'docker", "Unable to find image")
    useful = [x for x in lines if not x.startswith(noise)]
    return useful[0] if useful else (lines[-1] if lines else "")


def docker_remove(container_id: str) -> None:
    """`docker rm -f`, best effort: this cleans up after a failure that is being reported."""
    import docker.errors
    import requests.exceptions

    # the error being reported is the one the user needs; a failed cleanup shows in `docker ps`
    with contextlib.suppress(BusError, docker.errors.DockerException,
                             requests.exceptions.RequestException):
        docker_client().containers.get(container_id).remove(force=True)
