"""Asking the supervisor something during ``setup()``, before the actor's loop runs.

The reply is read straight off the actor's bus socket: the loop is not dispatching yet, and the
supervisor sends an actor nothing else before it is ready, so anything else is logged and skipped.
What an actor asks this way: the network secret ("secret.get", answered only to the actors that
derive session keys).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import zmq

from weavenet.runtime import bus
from weavenet.runtime.bus import Envelope

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor


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


def fetch_secret(actor: Actor, timeout: float) -> bytes:
    """The network secret (the stretched password: never log it). Raises RuntimeError when the
    supervisor has none for this actor or does not answer in ``timeout`` seconds."""
    req = bus.request("secret.get", src=actor.NAME, inc=actor.inc)
    actor.send_sup(req)
    reply = await_reply(actor.sup, req, timeout, actor.log)
    if reply is None:
        raise RuntimeError("the supervisor did not send the network secret in time")
    secret = reply.body.get("secret")
    if not isinstance(secret, bytes):
        raise RuntimeError(f"the supervisor has no network secret for {actor.NAME}")
    return secret
