"""Structured JSON logs, one line per event, so `jq 'select(.actor=="gossip")'` just works.

Every process (supervisor and each actor) appends to the same file under WEAVE_STATE_DIR; a
line is written with a single write() on an O_APPEND descriptor, so lines from different
processes never interleave mid-line.

A line is the bound context, then the call's keywords, then ``event``, ``level`` and
``timestamp`` (ISO 8601, UTC, ``Z``); ``exception()`` (or ``exc_info=True``) adds the traceback
as ``exception``. This is the small part of structlog the router used, written out: structlog
imports asyncio and about 110 modules, some 10 MB resident in each of the router's six
processes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

LOG_NAME = "weave.log"


class _Tee:
    """A sink that writes each rendered line to several streams in one write each."""

    def __init__(self, streams: list[TextIO]) -> None:
        self._streams = streams

    def write(self, message: str) -> None:
        line = message + "\n"
        for s in self._streams:
            try:
                s.write(line)
                s.flush()
            except (OSError, ValueError):  # a closed stderr must not kill the actor
                pass


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


class Logger:
    """A bound logger: ``log.info("event", key=value)``; ``bind(**kw)`` returns a new one."""

    def __init__(self, sink: _Tee, context: dict[str, Any], debug: bool = False) -> None:
        self._sink = sink
        self._context = context
        self._debug = debug

    def bind(self, **kw: Any) -> Logger:
        return Logger(self._sink, {**self._context, **kw}, self._debug)

    def _emit(self, level: str, event: str, kw: dict[str, Any]) -> None:
        exc_info = kw.pop("exc_info", False)
        record = {**self._context, **kw, "event": event, "level": level,
                  "timestamp": _timestamp()}
        if exc_info:
            import traceback  # only when there is a traceback to show

            record["exception"] = traceback.format_exc()
        self._sink.write(json.dumps(record, default=repr))

    def debug(self, event: str, **kw: Any) -> None:
        if self._debug:
            self._emit("debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._emit("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._emit("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._emit("error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._emit("error", event, kw)


def log_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / LOG_NAME


def stderr_logger(debug: bool = False, **bound: Any) -> Logger:
    """A logger writing to stderr only (tests, tools)."""
    return Logger(_Tee([sys.stderr]), dict(bound), debug)


def configure(
    *,
    actor: str,
    inc: int,
    state_dir: str | os.PathLike[str] | None,
    debug: bool = False,
    stderr: bool = False,
    **bound: Any,
) -> Logger:
    streams: list[TextIO] = []
    if state_dir is not None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path(state_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        streams.append(os.fdopen(fd, "a", buffering=1))
    if stderr or not streams:
        streams.append(sys.stderr)
    return Logger(_Tee(streams), {"actor": actor, "pid": os.getpid(), "inc": inc, **bound}, debug)
