"""Docker's container events for netconf: a restarted container is re-attached with the addresses
it had, a removed one is forgotten.

A container's network namespace dies with its process: after `docker restart C` (or stop then
start) C runs in a new namespace without its weave interface. Docker says so on its event
stream, which :class:`DockerEvents` reads in a thread of its own and turns into one JSON line per
event on a pipe that netconf's loop polls, so every change of host state stays on netconf's
thread. Lines: ``{"action": "start"|"destroy", "id": ...}``; ``{"action": "sync"}`` once the
stream is (re)subscribed, since events may have been missed meanwhile (the router or Docker was
restarting, a reboot); ``{"action": "lost", "reason": ...}`` when the stream broke or Docker
cannot be reached (retried every ``RETRY`` seconds).

:func:`plan` decides what one recorded attachment needs given what Docker says of its container;
it is plain data, unit-tested. A stopped container keeps its record, and so its addresses, until
it is removed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from weavenet.host import dockerapi
from weavenet.host.attachments import Attachment

ACTIONS = ("start", "destroy")
RETRY = 2.0  # seconds between attempts to reach Docker's event stream
# seconds for one Docker API call of netconf's (inspect): well under the supervisor's heartbeat
# timeout, since netconf's loop waits for it
API_TIMEOUT = 3


@dataclass(frozen=True)
class ContainerState:
    """What Docker says of a container: running or not, and its init's pid."""

    running: bool
    pid: int


@dataclass(frozen=True)
class Reattach:
    key: str
    netns: str
    pid: int


@dataclass(frozen=True)
class Forget:
    key: str


def plan(a: Attachment, state: ContainerState | None,
         inode: Callable[[str], int | None]) -> Reattach | Forget | None:
    """What attachment ``a`` needs: its container is gone (``state`` None): forget it; it runs
    in a namespace other than the one attached: re-attach there (``veth.attach`` ensures, so
    re-attaching what is attached changes nothing); otherwise nothing."""
    if state is None:
        return Forget(a.key)
    if not state.running or state.pid <= 0:
        return None  # it keeps its addresses until it is started again or removed
    netns = f"/proc/{state.pid}/ns/net"
    ino = inode(netns)
    # Both: the kernel reuses a freed namespace's inode number at once, so a restarted
    # container's new namespace often has its old one's; its init's pid differs.
    if state.pid == a.pid and ino is not None and ino == a.ino:
        return None
    return Reattach(a.key, netns, state.pid)


def connect() -> Any:
    """A Docker client (DOCKER_HOST honoured), already answering; raises OSError or what the
    SDK raises. A Unix socket is spoken to by :mod:`weavenet.host.dockerapi`; anything else
    (tcp://, TLS) through the Docker SDK, imported only then."""
    path = dockerapi.socket_path(os.environ.get("DOCKER_HOST"))
    client: Any = dockerapi.Client(path, API_TIMEOUT) if path is not None else _SdkClient()
    client.ping()
    return client


class _SdkClient:
    """The Docker SDK behind the interface of :class:`dockerapi.Client`."""

    def __init__(self) -> None:
        import docker

        self._docker = docker.from_env(timeout=API_TIMEOUT)
        self._not_found = docker.errors.NotFound

    def ping(self) -> None:
        self._docker.ping()

    def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        try:
            return self._docker.api.inspect_container(container_id)
        except self._not_found:
            return None

    def events(self, decode: bool = True, filters: dict[str, Any] | None = None) -> Any:
        return self._docker.events(decode=decode, filters=filters)


def container_state(client: Any, container_id: str) -> ContainerState | None:
    """The container's state, None if Docker does not know it (removed)."""
    attrs = client.inspect_container(container_id)
    if attrs is None:
        return None
    state = attrs.get("State") or {}
    return ContainerState(bool(state.get("Running")), int(state.get("Pid") or 0))


class DockerEvents:
    """Docker's container start and destroy events as lines on a pipe (``fd``, non-blocking)."""

    def __init__(self, connect: Callable[[], Any] = connect, retry: float = RETRY) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        self._connect = connect
        self._retry = retry
        self._buf = b""
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def read(self) -> list[dict[str, Any]]:
        """The events written since the last call (call when ``fd`` is readable)."""
        try:
            self._buf += os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        *lines, self._buf = self._buf.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def _emit(self, msg: dict[str, Any]) -> None:
        os.write(self._write_fd, json.dumps(msg).encode() + b"\n")  # < PIPE_BUF: one write

    def _run(self) -> None:
        while True:
            try:
                client = self._connect()
                stream = client.events(decode=True, filters={"type": "container",
                                                             "event": list(ACTIONS)})
                # after subscribing: what happened before is found by the sync, what happens
                # after is on the stream
                self._emit({"action": "sync"})
                for ev in stream:
                    action = ev.get("Action") or ev.get("status")
                    cid = (ev.get("Actor") or {}).get("ID") or ev.get("id")
                    if action in ACTIONS and isinstance(cid, str):
                        self._emit({"action": action, "id": cid})
                reason = "the event stream ended"
            except Exception as exc:  # the SDK raises many kinds; all mean "not now"
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self._emit({"action": "lost", "reason": reason})
            time.sleep(self._retry)
