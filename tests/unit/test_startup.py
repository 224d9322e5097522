"""An actor asking the supervisor something before its loop runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import zmq

from weavenet.runtime import bus
from weavenet.runtime.log import stderr_logger
from weavenet.runtime.startup import await_reply, fetch_secret


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
    reply = await_reply(actor, req, 5.0, stderr_logger())
    assert reply is not None and reply.in_reply_to == req.id and reply.body == {"secret": b"k"}


def test_no_reply_in_time_is_none(sockets: tuple[zmq.Socket, zmq.Socket]) -> None:
    _, actor = sockets
    req = bus.request("secret.get", src="gossip")
    actor.send(bus.encode(req))
    assert await_reply(actor, req, 0.05, stderr_logger()) is None


class Asker:
    NAME = "gossip"
    inc = 1

    def __init__(self, sup: zmq.Socket) -> None:
        self.sup = sup
        self.log = stderr_logger()

    def send_sup(self, env: bus.Envelope) -> None:
        self.sup.send(bus.encode(env))


def answer_secret(sup: zmq.Socket, secret: bytes | None) -> None:
    ident, data = sup.recv_multipart()
    req = bus.decode(data)
    assert req.type == "secret.get"
    sup.send_multipart([ident, bus.encode(bus.reply(req, {"secret": secret}))])


def test_the_network_secret_is_fetched(sockets: tuple[zmq.Socket, zmq.Socket]) -> None:
    sup, actor = sockets
    asker = Asker(actor)
    threading.Timer(0.01, answer_secret, (sup, b"s" * 32)).start()
    assert fetch_secret(asker, 5.0) == b"s" * 32  # type: ignore[arg-type]


def test_no_secret_for_this_actor_is_an_error(sockets: tuple[zmq.Socket, zmq.Socket]) -> None:
    sup, actor = sockets
    threading.Timer(0.01, answer_secret, (sup, None)).start()
    with pytest.raises(RuntimeError, match="no network secret for gossip"):
        fetch_secret(Asker(actor), 5.0)  # type: ignore[arg-type]
