"""Callbacks for the supervisor's "actor.ready" events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from weavenet.runtime import bus
from weavenet.runtime.ready import on_ready


class Subscriber:
    """Stands in for an actor: subscribes on an inproc PUB, keeps its one reader."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.ctx = ctx
        self.readers: dict[Any, Callable[[], None]] = {}

    def subscribe_events(self, *topics: str) -> zmq.Socket:
        sub = self.ctx.socket(zmq.SUB)
        for t in topics:
            sub.setsockopt(zmq.SUBSCRIBE, t.encode())
        sub.connect("inproc://events")
        return sub

    def add_reader(self, sock: Any, callback: Callable[[], None]) -> None:
        self.readers[sock] = callback


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_each_named_actor_coming_up_calls_its_callback(ctx: zmq.Context) -> None:
    pub = ctx.socket(zmq.PUB)
    pub.bind("inproc://events")
    actor = Subscriber(ctx)
    seen: list[str] = []
    sub = on_ready(actor, {"forwarder": lambda: seen.append("fwd"),  # type: ignore[arg-type]
                           "crypto": lambda: seen.append("crypto")})
    time.sleep(0.05)  # the subscription reaches the PUB

    def event(data: Any) -> None:
        pub.send_multipart([b"actor.ready", bus.encode(bus.request("event", {"data": data}))])

    event({"name": "crypto"})
    pub.send_multipart([b"actor.ready", b"garbage"])
    event({"name": ["unhashable"]})
    event("not a dict")
    event({"name": "netconf"})  # nobody asked
    event({"name": "forwarder"})
    assert sub.poll(1000)
    time.sleep(0.05)
    actor.readers[sub]()
    assert seen == ["crypto", "fwd"]
