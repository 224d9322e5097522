"""The actor runtime's dispatcher: handlers get decoded requests, every failure is an error reply,
and the supervisor's tables cover every control request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

import supervisor
from weavenet.runtime import bus
from weavenet.runtime.actor import Actor, handles, load_config
from weavenet.runtime.control import CONTROL_REQUESTS, Expose, Ps
from weavenet.runtime.launch import LaunchConfig
from weavenet.runtime.request import Request, UsageError


@dataclass(frozen=True)
class Boom(Request):
    TYPE = "boom"
    HANDLER = "echo"


class Echo(Actor):
    NAME = "echo"

    @handles(Expose)
    def expose(self, req: Expose) -> dict[str, Any]:
        if req.cidr == "10.0.0.66/16":
            raise UsageError("not that one")
        return {"got": req.cidr, "kind": type(req).__name__}

    @handles(Ps)
    def ps(self, req: Ps) -> None:
        return None

    @handles(Boom)
    def boom(self, req: Boom) -> dict[str, Any]:
        raise RuntimeError("handler bug")


@pytest.fixture
def actor(tmp_path: Path) -> Iterator[Echo]:
    a = Echo(tmp_path / "run", LaunchConfig(state_dir=str(tmp_path / "state")))
    yield a
    a.ctx.destroy(linger=0)


def call(actor: Actor, type_: str, body: dict[str, Any] | None = None) -> bus.Envelope:
    return actor.dispatch(bus.request(type_, body, src="test"))


def test_the_handler_gets_the_decoded_request(actor: Echo):
    r = call(actor, "expose", {"cidr": "10.0.0.9/16"})
    assert r.ok and r.body == {"got": "10.0.0.9/16", "kind": "Expose"}
    assert call(actor, "ps").body == {}


def test_a_body_that_does_not_decode_never_reaches_the_handler(actor: Echo):
    r = call(actor, "expose", {"cidr": "not a cidr"})
    assert r.ok is False and r.error["code"] == bus.USAGE


def test_handler_errors_become_error_replies(actor: Echo):
    r = call(actor, "expose", {"cidr": "10.0.0.66/16"})
    assert r.error == {"code": bus.USAGE, "reason": "not that one"}
    r = call(actor, "boom")
    assert r.error == {"code": bus.FAILED, "reason": "handler bug"}
    r = call(actor, "attach", {})
    assert r.error["code"] == bus.USAGE and "does not handle" in r.error["reason"]


def test_the_handler_table_is_built_per_class():
    assert set(Echo.HANDLERS) == {"expose", "ps", "boom"}
    assert Echo.HANDLERS["expose"][0] is Expose
    assert Actor.HANDLERS == {}


def test_actors_read_the_launch_config_the_supervisor_wrote(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    config = LaunchConfig(port=16783, peers=("10.1.0.2:6783",), state_dir=str(tmp_path))
    (run / "config.msgpack").write_bytes(msgpack.packb(config.to_body()))
    assert load_config(run) == config


def test_the_supervisor_answers_or_relays_every_control_request_and_nothing_else():
    own = set(supervisor.Supervisor.CTL_REQUESTS)
    relayed = set(supervisor.REQUEST_ROUTES)
    assert own.isdisjoint(relayed)
    assert own | relayed == {c.TYPE for c in CONTROL_REQUESTS}
    assert set(supervisor.REQUEST_ROUTES.values()) <= set(supervisor.ACTOR_ORDER)
    assert Path(supervisor.__file__).parent == Path(__file__).resolve().parents[2]


def test_one_socket_may_have_a_reader_and_a_writer_each_removed_alone(actor: Echo):
    sock = actor.ctx.socket(zmq.PAIR)
    sock.bind("inproc://reader-and-writer")
    actor.add_reader(sock, lambda: None)
    actor.add_writer(sock, lambda: None)
    assert dict(actor.poller.sockets)[sock] == zmq.POLLIN | zmq.POLLOUT
    actor.remove_writer(sock)  # e.g. the crypto queue has room again: its replies still count
    assert dict(actor.poller.sockets)[sock] == zmq.POLLIN
    actor.add_writer(sock, lambda: None)
    actor.remove_reader(sock)
    assert dict(actor.poller.sockets)[sock] == zmq.POLLOUT
    actor.remove_writer(sock)
    assert sock not in actor.poller
    sock.close(linger=0)
