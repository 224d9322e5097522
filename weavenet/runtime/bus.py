"""The control-plane bus: the msgpack envelope every process speaks, and the socket addresses.

An envelope is ``{v, type, id, in_reply_to, src, inc, ts, body}``; a reply keeps the request's
type and adds ``ok`` and, on failure, ``error: {code, reason}``. Raw Ethernet frames never travel
inside an envelope: the data plane has its own framing (see ``weavenet.dataplane.batch``).

All ipc endpoints live in one run directory (``WEAVE_RUN_DIR``), mode 0700, so only root can
reach the control socket: the permission check is the directory, not the socket file, because
a connecting client needs search permission on every directory of the path.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from weavenet.runtime import defaults
from weavenet.runtime.codec import unpack_map

PROTOCOL_VERSION = 1
MAX_ENVELOPE = 4 * 1024 * 1024
MAX_NAME_LEN = 64  # type, id and src: short identifiers, echoed into logs
MAX_INC = (1 << 63) - 1  # incarnations are counted up by the supervisor
# sun_path is 108 bytes including the terminating NUL.
MAX_IPC_PATH = 107


# Error codes carried in replies. The CLI maps "usage" to exit status 2, everything else to 1.
USAGE = "usage"
FAILED = "failed"
UNAVAILABLE = "unavailable"


class EnvelopeError(ValueError):
    """A message on the bus that is not a valid envelope."""


class BusError(Exception):
    """An error reply, raised where a caller wants exceptions rather than replies."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    type: str
    body: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    src: str = ""
    inc: int = 0
    ts: float = 0.0
    in_reply_to: str | None = None
    ok: bool | None = None
    error: dict[str, str] | None = None
    v: int = PROTOCOL_VERSION

    @property
    def is_reply(self) -> bool:
        return self.in_reply_to is not None

    def raise_for_error(self) -> Envelope:
        if self.ok is False:
            err = self.error or {}
            raise BusError(err.get("code", FAILED), err.get("reason", "unknown error"))
        return self


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def request(
    type: str, body: dict[str, Any] | None = None, *, src: str = "", inc: int = 0
) -> Envelope:
    return Envelope(type=type, body=body or {}, id=new_id(), src=src, inc=inc, ts=time.time())


def reply(
    req: Envelope,
    body: dict[str, Any] | None = None,
    *,
    src: str = "",
    inc: int = 0,
    error: tuple[str, str] | None = None,
) -> Envelope:
    return Envelope(
        type=req.type,
        body=body or {},
        id=new_id(),
        src=src,
        inc=inc,
        ts=time.time(),
        in_reply_to=req.id,
        ok=error is None,
        error=None if error is None else {"code": error[0], "reason": error[1]},
    )


def encode(env: Envelope) -> bytes:
    d: dict[str, Any] = {
        "v": env.v,
        "type": env.type,
        "id": env.id,
        "src": env.src,
        "inc": env.inc,
        "ts": env.ts,
        "body": env.body,
    }
    if env.in_reply_to is not None:
        d["in_reply_to"] = env.in_reply_to
        d["ok"] = bool(env.ok)
        if env.error is not None:
            d["error"] = env.error
    return msgpack.packb(d, use_bin_type=True)


def _field(d: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    value = d.get(name, default)
    # bool is an int subclass: an int field must not take True
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (
            kind if isinstance(kind, tuple) else (kind,))):
        raise EnvelopeError(f"field {name!r} has the wrong type")
    return value


def _name(d: dict[str, Any], name: str, default: str | None) -> str:
    value = _field(d, name, str, default)
    if len(value) > MAX_NAME_LEN:
        raise EnvelopeError(f"field {name!r} longer than {MAX_NAME_LEN}")
    return value


def decode(data: bytes) -> Envelope:
    """Parse an envelope; anything malformed raises EnvelopeError, never another exception."""
    d = unpack_map(data, EnvelopeError, "envelope", MAX_ENVELOPE)
    v = _field(d, "v", int)
    if v != PROTOCOL_VERSION:
        raise EnvelopeError(f"unsupported envelope version {v}")
    type_ = _name(d, "type", None)
    if not type_:
        raise EnvelopeError("empty type")
    in_reply_to = _field(d, "in_reply_to", (str, type(None)))
    if in_reply_to is not None and len(in_reply_to) > MAX_NAME_LEN:
        raise EnvelopeError(f"field 'in_reply_to' longer than {MAX_NAME_LEN}")
    error = _field(d, "error", (dict, type(None)))
    if error is not None and not all(isinstance(x, str) for x in error.values()):
        raise EnvelopeError("error fields must be strings")
    inc = _field(d, "inc", int, 0)
    if not 0 <= inc <= MAX_INC:
        raise EnvelopeError("field 'inc' out of range")
    ts = float(_field(d, "ts", (int, float), 0.0))
    if not math.isfinite(ts):
        raise EnvelopeError("field 'ts' is not a finite number")
    return Envelope(
        type=type_,
        body=_field(d, "body", dict, {}),
        id=_name(d, "id", ""),
        src=_name(d, "src", ""),
        inc=inc,
        ts=ts,
        in_reply_to=in_reply_to,
        ok=_field(d, "ok", (bool, type(None))),
        error=error,
        v=v,
    )


class Endpoints:
    """Every ipc address of one router, derived from its run directory."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)

    def _ipc(self, name: str) -> str:
        path = str(self.run_dir / name)
        if len(path.encode()) > MAX_IPC_PATH:
            raise ValueError(f"ipc path too long ({len(path)} > {MAX_IPC_PATH} bytes): {path}")
        return f"ipc://{path}"

    @property
    def ctl(self) -> str:
        """The CLI's door into the supervisor (ROUTER)."""
        return self._ipc("ctl.sock")

    @property
    def actors(self) -> str:
        """Actors' DEALERs connect here: ready, heartbeats, requests and replies (ROUTER)."""
        return self._ipc("actors.sock")

    @property
    def events(self) -> str:
        """The supervisor's single PUB socket."""
        return self._ipc("events.sock")

    @property
    def frames_out(self) -> str:
        """capture PUSH -> forwarder PULL: frames read from the bridge."""
        return self._ipc("frames-out.sock")

    @property
    def crypto(self) -> str:
        """forwarder DEALER <-> crypto ROUTER: datagrams to seal and open."""
        return self._ipc("crypto.sock")

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "weave.pid"

    @property
    def config(self) -> Path:
        return self.run_dir / "config.msgpack"

    def prepare(self) -> None:
        """Create the run directory root-only; tighten it if it already exists."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        for name in ("ctl", "actors", "events", "frames_out", "crypto"):
            getattr(self, name)  # fail early on a path that is too long

    def restrict_sockets(self) -> None:
        """Make every socket file present 0600 (DESIGN), whoever bound it: zmq creates them
        with the umask's mode. The 0700 directory is what keeps others out; this keeps the
        files honest if the directory is ever loosened."""
        for path in self.socket_files():
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, 0o600)

    def socket_files(self) -> list[Path]:
        return [self.run_dir / n for n in (
            "ctl.sock", "actors.sock", "events.sock", "frames-out.sock", "crypto.sock",
        )]


def run_dir_from_env() -> Path:
    return Path(os.environ.get("WEAVE_RUN_DIR", defaults.RUN_DIR))


def state_dir_from_env() -> Path:
    return Path(os.environ.get("WEAVE_STATE_DIR", defaults.STATE_DIR))
