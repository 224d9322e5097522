"""Acting when the supervisor says an actor is ready: started, or restarted empty.

A restarted actor has lost what its peers gave it (the forwarder its routes, the crypto actor
its keys); the supervisor's "actor.ready" event is the cue to give it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import zmq

from weavenet.runtime.events import on_events

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor


def on_ready(actor: Actor, callbacks: Mapping[str, Callable[[], None]]) -> zmq.Socket:
    """Subscribe ``actor`` to the "actor.ready" events and call ``callbacks[name]`` for each
    named actor that comes up; malformed events are skipped. Returns the SUB socket."""

    def ready(_topic: str, data: dict[str, Any]) -> None:
        name = data.get("name")
        callback = callbacks.get(name) if isinstance(name, str) else None
        if callback is not None:
            callback()

    return on_events(actor, ready, "actor.ready")
