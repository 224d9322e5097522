"""Acting when the supervisor says an actor is ready: started, or restarted empty.

A restarted actor has lost what its peers gave it (the forwarder its routes, the crypto actor
its keys); the supervisor's "actor.ready" event is the cue to give it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import zmq

from weavenet.runtime import bus

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor


def on_ready(actor: Actor, callbacks: Mapping[str, Callable[[], None]]) -> zmq.Socket:
    """Subscribe ``actor`` to the "actor.ready" events and call ``callbacks[name]`` for each
    named actor that comes up; malformed events are skipped. Returns the SUB socket."""
    sock = actor.subscribe_events("actor.ready")

    def received() -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                data = bus.decode(frames[-1]).body.get("data")
            except (bus.EnvelopeError, IndexError, AttributeError):
                continue
            name = data.get("name") if isinstance(data, dict) else None
            callback = callbacks.get(name) if isinstance(name, str) else None
            if callback is not None:
                callback()

    actor.add_reader(sock, received)
    return sock
