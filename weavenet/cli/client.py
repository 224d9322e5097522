"""The CLI's side of the control socket: one DEALER, one request, one reply, with a deadline."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import zmq

from weavenet.runtime import bus
from weavenet.runtime.bus import BusError, Envelope
from weavenet.runtime.request import Request


class NotRunning(BusError):
    def __init__(self, reason: str = "weave is not running; start it with `weave launch`") -> None:
        super().__init__(bus.UNAVAILABLE, reason)


def router_pid(run_dir: Path) -> int | None:
    """The supervisor's pid if its pid file names a live process. A zombie is dead (a killed
    router whose parent, e.g. a container's init, does not reap it, must not block launch); a
    supervisor that is PID 1 of a PID namespace of its own writes 1, which here is init: never
    one to signal."""
    try:
        pid = int(bus.Endpoints(run_dir).pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid <= 1:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        # /proc/PID/stat: "pid (comm) state ...", comm may hold spaces and parentheses
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return pid
    return None if state == "Z" else pid


def _probe(path: Path) -> None:
    """Fail fast and clearly where zmq would silently wait: no socket, or no permission."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except PermissionError:
        raise BusError(bus.FAILED, "permission denied on the control socket (root only)") from None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise NotRunning() from None
        raise BusError(bus.FAILED, f"cannot reach the router: {exc.strerror}") from None
    finally:
        s.close()


def call(run_dir: Path, request: Request, timeout: float = 20.0) -> Envelope:
    """Send one request to the supervisor and return its (successful) reply, or raise BusError."""
    endpoints = bus.Endpoints(run_dir)
    _probe(endpoints.run_dir / "ctl.sock")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoints.ctl)
        req = bus.request(request.TYPE, request.to_body(), src="cli")
        sock.send(bus.encode(req))
        while True:
            if not sock.poll(int(timeout * 1000)):
                raise BusError(bus.FAILED, f"the router did not answer {request.TYPE!r} in "
                                              f"{timeout:.0f}s")
            rep = bus.decode(sock.recv())
            if rep.in_reply_to == req.id:
                return rep.raise_for_error()
    finally:
        sock.close()
