"""Receiving the supervisor's events: one SUB per subscriber, drained in bounded rounds, each
event's ``data`` decoded once here and handed over as a dict.

Every event is an envelope ``{"topic": ..., "data": {...}}`` sent as ``[topic, envelope]``
(``Actor.publish``, ``Supervisor.emit``). A malformed one (not an envelope, data not a map) is
skipped: an event is never worth an actor's life.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from weavenet.runtime import bus
from weavenet.runtime.actor import drain

if TYPE_CHECKING:
    from weavenet.runtime.actor import Actor

EVENTS_PER_WAKEUP = 16  # one chatty publisher must not starve the rest of the loop

EventHandler = Callable[[str, dict[str, Any]], None]


def event_data(parts: list[bytes]) -> tuple[str, dict[str, Any]] | None:
    """(topic, data) of one received event, or None when it is malformed."""
    if len(parts) != 2:
        return None
    try:
        data = bus.decode(parts[1]).body.get("data")
        topic = parts[0].decode()
    except (bus.EnvelopeError, UnicodeDecodeError, AttributeError):
        return None
    return (topic, data) if isinstance(data, dict) else None


def on_events(actor: Actor, handler: EventHandler, *topics: str) -> zmq.Socket:
    """Subscribe ``actor`` to ``topics`` and call ``handler(topic, data)`` for each well-formed
    event, at most EVENTS_PER_WAKEUP per wakeup. Returns the SUB socket."""
    sock = actor.subscribe_events(*topics)

    def received() -> None:
        for parts in drain(sock, EVENTS_PER_WAKEUP, copy=True):
            event = event_data(parts)
            if event is not None:
                handler(*event)

    actor.add_reader(sock, received)
    return sock
