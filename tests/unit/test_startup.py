"""An actor asking the supervisor something before its loop runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
import zmq

from weavenet.runtime import bus
from weavenet.runtime.startup import await_reply


@pytest.fixture
def sockets() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    ctx = zmq.Context()
    sup = ctx.socket(zmq.ROUTER)
    sup.bind("inproc://actors")
    actor = ctx.socket(zmq.DEALER)
    actor.setsockopt(zmq.IDENTITY, b"gossip")
    actor.connect("inproc://actors")
    yield sup, actor
    ctx.destroy(linger=0)


def test_the_reply_is_found_behind_other_messages(sockets: tuple[zmq.Socket, zmq.Socket]) -> None:
    sup, actor = sockets
    req = bus.request("secret.get", src="gossip")
    actor.send(bus.encode(req))
    ident, data = sup.recv_multipart()
    other = bus.request("status", src="supervisor")
    sup.send_multipart([ident, b"not an envelope"])
    sup.send_multipart([ident, bus.encode(other)])
    sup.send_multipart([ident, bus.encode(bus.reply(bus.decode(data), {"secret": b"k"}))])
    reply = await_reply(actor, req, 5.0, structlog.get_logger())
    assert reply is not None and reply.in_reply_to == req.id and reply.body == {"secret": b"k"}


def test_no_reply_in_time_is_none(sockets: tuple[zmq.Socket, zmq.Socket]) -> None:
    _, actor = sockets
    req = bus.request("secret.get", src="gossip")
    actor.send(bus.encode(req))
    assert await_reply(actor, req, 0.05, structlog.get_logger()) is None
