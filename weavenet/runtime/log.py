"""Structured JSON logs, one line per event, so `jq 'select(.actor=="gossip")'` just works.

Every process (supervisor and each actor) appends to the same file under WEAVE_STATE_DIR; a
line is written with a single write() on an O_APPEND descriptor, so lines from different
processes never interleave mid-line.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

LOG_NAME = "weave.log"


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


def configure(
    *,
    actor: str,
    inc: int,
    state_dir: str | os.PathLike[str] | None,
    debug: bool = False,
    stderr: bool = False,
    **bound: Any,
) -> structlog.stdlib.BoundLogger:
    streams: list[TextIO] = []
    if state_dir is not None:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path(state_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        streams.append(os.fdopen(fd, "a", buffering=1))
    if stderr or not streams:
        streams.append(sys.stderr)
    sink = _Tee(streams)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if debug else logging.INFO
        ),
        logger_factory=lambda *a: sink,
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger().bind(actor=actor, pid=os.getpid(), inc=inc, **bound)
