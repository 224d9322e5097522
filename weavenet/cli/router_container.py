"""The router as a Docker container: what `weave launch`, `stop` and `reset` do in container mode.

The container is named ``weave`` and runs ``weavenet/weave:<version>``, whose entrypoint is
``weave-supervisor``; the launch options are its arguments (``LaunchConfig.to_args``), so a
container Docker restarts (its restart policy, a reboot, ``docker restart weave``) comes back
with the same settings. It shares the host's network (the bridge, the router's TAP and port are
the host's) and PID namespace (``/proc/PID/ns/net`` of an application container, as the CLI
resolves it, names the same namespace inside), and gets only the capabilities the actors use:
NET_ADMIN and NET_RAW for links, addresses, conntrack and the capture socket, SYS_ADMIN for
setns(2) into a container's namespace (attach fails without it), and /dev/net/tun.
``--privileged`` is not used: runc refuses it in nested setups such as the lab, and it grants
far more. The run and state directories and the Docker socket are mounted at
the same paths, so every other command talks to the supervisor over the same control socket in
either mode.

The password never appears in the container's configuration: the CLI writes it to
``WEAVE_STATE_DIR/password`` (0600 in a 0700 directory) and the supervisor gets only that path.

``run_spec`` is plain data (unit-tested); the functions below it talk to Docker.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import weavenet
from weavenet.cli.containers import docker_client, first_line
from weavenet.host import dockerapi
from weavenet.runtime.bus import FAILED, BusError
from weavenet.runtime.launch import LaunchConfig

NAME = "weave"
IMAGE_REPO = "weavenet/weave"
CAPABILITIES = ("NET_ADMIN", "NET_RAW", "SYS_ADMIN")
TUN = "/dev/net/tun"
RESTART_POLICY = "unless-stopped"  # back after a reboot, unless `weave stop` stopped it
PASSWORD_FILE = "password"
DEFAULT_DOCKER_SOCKET = dockerapi.DEFAULT_SOCKET
LABEL = "weavenet.router"  # marks the container as ours
STOP_TIMEOUT = 15  # seconds Docker waits after SIGTERM before SIGKILL


def image(version: str = weavenet.__version__) -> str:
    return f"{IMAGE_REPO}:{version}"


docker_socket = dockerapi.socket_path  # the unix socket DOCKER_HOST names, or None


def run_spec(config: LaunchConfig, run_dir: Path, state_dir: Path, docker_host: str | None,
             password_file: Path | None, tag: str | None = None) -> dict[str, Any]:
    """The Docker SDK's ``containers.run`` keyword arguments for the router container."""
    args = ["--run-dir", str(run_dir), "--state-dir", str(state_dir), "--router", "container",
            "--foreground", *config.to_args()]
    if password_file is not None:
        args += ["--password-file", str(password_file)]
    volumes = {str(d): {"bind": str(d), "mode": "rw"} for d in (run_dir, state_dir)}
    environment = {}
    sock = docker_socket(docker_host)
    if sock is not None:
        volumes[sock] = {"bind": sock, "mode": "rw"}
    if docker_host:
        environment["DOCKER_HOST"] = docker_host
    return {
        "image": tag or image(),
        "name": NAME,
        "command": args,
        "detach": True,
        "network_mode": "host",
        "pid_mode": "host",
        "cap_add": list(CAPABILITIES),
        "devices": [f"{TUN}:{TUN}:rwm"],
        "volumes": volumes,
        "environment": environment,
        "restart_policy": {"Name": RESTART_POLICY},
        "labels": {LABEL: weavenet.__version__},
    }


def write_password(state_dir: Path, password: bytes | None) -> Path | None:
    """The password in a 0600 file of the state directory (removed when there is none)."""
    path = state_dir / PASSWORD_FILE
    if password is None:
        path.unlink(missing_ok=True)
        return None
    tmp = path.with_name(f".{PASSWORD_FILE}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    # created 0600, never wider for a moment; renamed whole over the old one
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(password)
    os.replace(tmp, path)
    return path


# -- Docker -------------------------------------------------------------------------------------
def client() -> Any:
    """A Docker client for the router container, or BusError saying why there is none."""
    return docker_client(timeout=60, purpose=" for the router container")


def find(docker_client: Any = None) -> Any:
    """The ``weave`` container, or None (none, or no Docker to ask)."""
    import docker.errors

    try:
        c = docker_client or client()
    except BusError:
        return None
    try:
        found = c.containers.get(NAME)
    except docker.errors.NotFound:
        return None
    # someone else's container of that name is neither stopped nor removed by weave
    return found if LABEL in (found.labels or {}) else None


def ensure_image(docker_client: Any, tag: str) -> None:
    """The image is in the engine, pulled if it was not; otherwise one line on how to get it."""
    import docker.errors

    try:
        docker_client.images.get(tag)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        docker_client.images.pull(tag)
    except docker.errors.DockerException as exc:
        raise BusError(FAILED, f"image {tag} not found and `docker pull` failed "
                       f"({first_line(exc)}); build it with `docker build -t {tag} .` in the "
                       "weavenet source, or offline: `weave-lab image --output weave.tar` then "
                       "`docker load -i weave.tar` (or `weave launch --router process`)") from None


def start(c: Any, spec: dict[str, Any]) -> Any:
    """Create and start the router container (a stopped one of an earlier launch is replaced,
    since its arguments may differ from this launch's)."""
    import docker.errors

    old = find(c)
    if old is not None:
        if old.status in ("running", "restarting"):
            raise BusError(FAILED, "weave is already running (container weave); "
                           "`weave stop` first")
        old.remove(force=True)
    try:
        return c.containers.run(**spec)
    except docker.errors.DockerException as exc:
        with contextlib.suppress(docker.errors.DockerException):
            c.containers.get(NAME).remove(force=True)
        raise BusError(FAILED, f"docker could not start the router container: "
                       f"{first_line(exc)}") from None


def exit_reason(container: Any) -> str | None:
    """Why a container just started is not becoming ready, or None while it may: it exited,
    or it did and Docker is restarting it (its restart policy would retry forever)."""
    container.reload()
    state = container.attrs.get("State", {})
    if state.get("Running") and not container.attrs.get("RestartCount"):
        return None
    return (f"the router container exited (status {state.get('ExitCode')}); "
            "see `docker logs weave`")


def stop(container: Any) -> None:
    """`docker stop`: the supervisor gets SIGTERM and stops its actors; the restart policy then
    leaves the container stopped, across reboots too, until `weave launch`."""
    container.stop(timeout=STOP_TIMEOUT)


def remove(container: Any) -> None:
    container.remove(force=True)

