"""Asking the supervisor something during ``setup()``, before the actor's loop runs.

The reply is read straight off the actor's bus socket: the loop is not dispatching yet, and the
supervisor sends an actor nothing else before it is ready, so anything else is logged and skipped.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from weavenet.runtime import bus
from weavenet.runtime.bus import Envelope


def await_reply(sup: zmq.Socket, request: Envelope, timeout: float, log: Any) -> Envelope | None:
    """The reply to ``request`` (already sent on ``sup``), or None if none came in ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not sup.poll(int(left * 1000) + 1):
            break
        try:
            env = bus.decode(sup.recv())
        except bus.EnvelopeError:
            continue
        if env.in_reply_to == request.id:
            return env
        log.warning("unexpected_bus_message_at_setup", type=env.type)
    return None
