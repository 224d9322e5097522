"""Structured JSON logs (structlog), one line per event, so `jq 'select(.actor=="gossip")'`
just works.

Every process (supervisor and each actor) appends to the same file under WEAVE_STATE_DIR; a
line is written with a single write() on an O_APPEND descriptor, so lines from different
processes never interleave mid-line. A line is the bound context, then the call's keywords,
then ``event``, ``level`` and ``timestamp`` (ISO 8601, UTC); ``exception()`` (or
``exc_info=True``) adds the traceback as ``exception``.

structlog imports asyncio at import time for its async logging methods, which the router never
calls; asyncio and what it pulls in are ~7 MB resident in each of the router's six processes.
So the import is deferred (:func:`_defer_asyncio`): ``asyncio`` is a placeholder module until
something uses an attribute of it, which then imports the real one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any, TextIO


class _DeferredAsyncio(types.ModuleType):
    """Stands in for ``asyncio`` until an attribute is used: then the real module is imported
    (and replaces this one in ``sys.modules``) and answers."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get("asyncio") is self:
            del sys.modules["asyncio"]
        return getattr(importlib.import_module("asyncio"), name)


def _defer_asyncio() -> None:
    if "asyncio" in sys.modules:
        return
    stub = _DeferredAsyncio("asyncio")
    stub.__spec__ = importlib.util.find_spec("asyncio")  # what `import asyncio` checks
    sys.modules["asyncio"] = stub


_defer_asyncio()

import structlog  # noqa: E402  (after the placeholder above)

LOG_NAME = "weave.log"

PROCESSORS = [
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    structlog.processors.JSONRenderer(sort_keys=False),
]


class _Tee:
    """A file-like sink that writes each rendered line to several streams in one write each."""

    def __init__(self, streams: list[TextIO]) -> None:
        self._streams = streams

    def msg(self, message: str) -> None:
        line = message + "\n"
        for s in self._streams:
            try:
                s.write(line)
                s.flush()
            except (OSError, ValueError):  # a closed stderr must not kill the actor
                pass

    log = debug = info = warning = error = critical = exception = msg


def log_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / LOG_NAME


def _logger(sink: _Tee, debug: bool, bound: dict[str, Any]) -> Any:
    level = logging.DEBUG if debug else logging.INFO
    return structlog.wrap_logger(sink, processors=PROCESSORS,
                                 wrapper_class=structlog.make_filtering_bound_logger(level),
                                 ).bind(**bound)


def stderr_logger(debug: bool = False, **bound: Any) -> Any:
    """A logger writing to stderr only (tests, tools)."""
    return _logger(_Tee([sys.stderr]), debug, bound)


def configure(
    *,
    actor: str,
    inc: int,
    state_dir: str | os.PathLike[str] | None,
    debug: bool = False,
    stderr: bool = False,
    **bound: Any,
) -> Any:
    """The process's logger, bound to ``actor``, its pid and incarnation ``inc``."""
    streams: list[TextIO] = []
    if state_dir is not None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path(state_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        streams.append(os.fdopen(fd, "a", buffering=1))
    if stderr or not streams:
        streams.append(sys.stderr)
    return _logger(_Tee(streams), debug, {"actor": actor, "pid": os.getpid(), "inc": inc, **bound})
