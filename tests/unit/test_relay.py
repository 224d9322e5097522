"""Requests to another actor through the supervisor, and their replies matched to them."""

from __future__ import annotations

from typing import Any

from weavenet.runtime import bus
from weavenet.runtime.bus import Envelope
from weavenet.runtime.control import Forget
from weavenet.runtime.relay import Relay


class Asker:
    NAME = "gossip"
    inc = 7

    def __init__(self) -> None:
        self.sent: list[Envelope] = []

    def send_sup(self, env: Envelope) -> None:
        self.sent.append(env)


def test_a_request_goes_to_the_supervisor_addressed_to_the_other_actor() -> None:
    asker = Asker()
    relay: Relay[str] = Relay(asker, "crypto")  # type: ignore[arg-type]
    req = Forget(("192.0.2.1",))
    relay.send(req, "context")
    (env,) = asker.sent
    assert env.type == "request" and (env.src, env.inc) == ("gossip", 7)
    assert env.body == {"to": "crypto", "type": req.TYPE, "body": req.to_body()}


def test_replies_give_back_the_context_and_the_failure_once() -> None:
    asker = Asker()
    relay: Relay[Any] = Relay(asker, "crypto")  # type: ignore[arg-type]
    relay.send(Forget(("192.0.2.1",)), ("a", 1))
    relay.send(Forget(("192.0.2.2",)), None)
    ok, failed = asker.sent
    assert relay.answer(bus.reply(ok, {})) == (("a", 1), None)
    assert relay.answer(bus.reply(ok, {})) is None  # answered already
    err = bus.reply(failed, error=(bus.UNAVAILABLE, "crypto is restarting"))
    assert relay.answer(err) == (None, "crypto is restarting")
    assert relay.answer(bus.reply(bus.request("other"), {})) is None
