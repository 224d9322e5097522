"""The runtime every actor process shares: bus connection, handler table, heartbeats, poll loop.

An actor is a subclass with a ``NAME``, a ``setup()`` that binds its sockets, handlers declared
with ``@handles(RequestClass)`` (the handler gets the decoded request, see
``weavenet.runtime.request``), and a ``status()`` that rides on every heartbeat (so the
supervisor can answer ``weave status`` without fanning out requests to processes that may be
restarting). Its settings are ``self.launch``, the :class:`LaunchConfig` the supervisor wrote.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import zmq

from weavenet.runtime import bus, log
from weavenet.runtime.bus import BusError, Envelope
from weavenet.runtime.launch import LaunchConfig
from weavenet.runtime.request import Request

HEARTBEAT_INTERVAL = 1.0

Handler = Callable[[Any, Any], dict[str, Any] | None]


def handles(request: type[Request]) -> Callable[[Handler], Handler]:
    """Declare a method as the handler of one request class; it is called with the decoded
    request (``request.from_body(env.body)``), never with a body that failed to decode."""

    def mark(fn: Handler) -> Handler:
        fn._handles = request  # type: ignore[attr-defined]
        return fn

    return mark


def drain(sock: zmq.Socket, limit: int, copy: bool = False) -> Iterator[list[Any]]:
    """The multipart messages waiting on `sock`, at most `limit` of them, never blocking.

    The bound keeps one busy socket from starving the others (and the heartbeat) in the loop.
    """
    recv = sock.recv_multipart
    for _ in range(limit):
        try:
            yield recv(zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            return


def load_config(run_dir: Path) -> LaunchConfig:
    """The launch configuration the supervisor wrote into the run directory."""
    with open(bus.Endpoints(run_dir).config, "rb") as f:
        return LaunchConfig.from_body(msgpack.unpackb(f.read(), raw=False))


class Actor:
    NAME = "actor"
    # request type -> (its class, the method that handles it); built from the @handles marks
    HANDLERS: dict[str, tuple[type[Request], Handler]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        table: dict[str, tuple[type[Request], Handler]] = {}
        for base in reversed(cls.__mro__):
            for attr in vars(base).values():
                request = getattr(attr, "_handles", None)
                if request is not None:
                    table[request.TYPE] = (request, attr)
        cls.HANDLERS = table

    def __init__(self, run_dir: Path, launch: LaunchConfig) -> None:
        self.run_dir = Path(run_dir)
        self.launch = launch
        self.endpoints = bus.Endpoints(run_dir)
        self.state_dir = Path(launch.state_dir)
        self.inc = random.getrandbits(63)
        self.started = time.time()
        self.log = log.configure(
            actor=self.NAME, inc=self.inc, state_dir=self.state_dir, debug=launch.debug,
            stderr=launch.foreground,  # the router container's `docker logs` shows every actor
        )
        self.ctx = zmq.Context()
        self.running = True
        self._parent = os.getppid()
        self._readers: dict[Any, Callable[[], None]] = {}
        self._writers: dict[Any, Callable[[], None]] = {}
        self._timers: list[tuple[float, int, float | None, Callable[[], None]]] = []
        self._timer_seq = 0
        self.poller = zmq.Poller()
        self.sup = self.ctx.socket(zmq.DEALER)
        self.sup.setsockopt(zmq.IDENTITY, self.NAME.encode())
        self.sup.setsockopt(zmq.LINGER, 0)
        self.sup.connect(self.endpoints.actors)
        self.add_reader(self.sup, self._on_bus)

    # -- wiring helpers for subclasses ------------------------------------------------------
    def add_reader(self, sock_or_fd: Any, callback: Callable[[], None]) -> None:
        self._readers[sock_or_fd] = callback
        self._register(sock_or_fd)

    def add_writer(self, sock: zmq.Socket, callback: Callable[[], None]) -> None:
        """Call ``callback`` while ``sock`` can take a message (a full queue has room again),
        until ``remove_writer``; a socket may have a reader too."""
        self._writers[sock] = callback
        self._register(sock)

    def remove_reader(self, sock_or_fd: Any) -> None:
        if self._readers.pop(sock_or_fd, None) is not None:
            self._register(sock_or_fd)

    def remove_writer(self, sock: zmq.Socket) -> None:
        if self._writers.pop(sock, None) is not None:
            self._register(sock)

    def _register(self, sock_or_fd: Any) -> None:
        flags = (zmq.POLLIN if sock_or_fd in self._readers else 0) | (
            zmq.POLLOUT if sock_or_fd in self._writers else 0)
        if flags:
            self.poller.register(sock_or_fd, flags)  # registering again modifies
        elif sock_or_fd in self.poller:
            self.poller.unregister(sock_or_fd)

    def after(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, ``delay`` seconds from now."""
        self._timer_seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._timer_seq, None, callback))

    def every(self, interval: float, callback: Callable[[], None],
              first: float | None = None) -> None:
        self._timer_seq += 1
        due = time.monotonic() + (interval if first is None else first)
        heapq.heappush(self._timers, (due, self._timer_seq, interval, callback))

    def subscribe_events(self, *topics: str) -> zmq.Socket:
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        for t in topics:
            sub.setsockopt(zmq.SUBSCRIBE, t.encode())
        sub.connect(self.endpoints.events)
        return sub

    def publish(self, topic: str, data: dict[str, Any]) -> None:
        """Ask the supervisor to publish an event on its PUB socket."""
        self.send_sup(bus.request("event", {"topic": topic, "data": data}, src=self.NAME,
                                  inc=self.inc))

    def send_sup(self, env: Envelope) -> None:
        try:
            self.sup.send(bus.encode(env), zmq.NOBLOCK)
        except zmq.Again:
            self.log.warning("bus_full_dropped", type=env.type)

    # -- overridables -----------------------------------------------------------------------
    def setup(self) -> None:
        """Bind sockets and register readers and timers."""

    def status(self) -> dict[str, Any]:
        return {}

    def teardown(self) -> None:
        """Release resources on a graceful stop. Kernel state is left alone."""

    # -- the loop ---------------------------------------------------------------------------
    def _on_bus(self) -> None:
        while True:
            try:
                data = self.sup.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                env = bus.decode(data)
            except bus.EnvelopeError as exc:
                self.log.warning("bad_envelope", reason=str(exc))
                continue
            if env.is_reply:
                self.on_reply(env)
                continue
            self.send_sup(self.dispatch(env))

    def on_reply(self, env: Envelope) -> None:
        """Replies to requests this actor sent through the supervisor."""

    def dispatch(self, env: Envelope) -> Envelope:
        """The one error boundary of the actor: every handler failure becomes an error reply."""
        entry = self.HANDLERS.get(env.type)
        self.log.debug("request_received", type=env.type, id=env.id, src=env.src)
        if entry is None:
            return bus.reply(env, src=self.NAME, inc=self.inc,
                             error=(bus.USAGE, f"{self.NAME} does not handle {env.type!r}"))
        request, handler = entry
        try:
            body = handler(self, request.from_body(env.body))
        except BusError as exc:
            return bus.reply(env, src=self.NAME, inc=self.inc, error=(exc.code, exc.reason))
        except Exception as exc:
            self.log.exception("handler_failed", type=env.type)
            return bus.reply(env, src=self.NAME, inc=self.inc, error=(bus.FAILED, str(exc)))
        return bus.reply(env, body or {}, src=self.NAME, inc=self.inc)

    def _heartbeat(self) -> None:
        if os.getppid() != self._parent:
            # The supervisor is gone; an orphaned actor must not keep the TAP or ports.
            self.log.warning("supervisor_gone")
            self.running = False
            return
        self.send_sup(bus.request(
            "actor.heartbeat",
            {"pid": os.getpid(), "started": self.started, "status": self.status()},
            src=self.NAME, inc=self.inc,
        ))

    def _stop(self, *_: Any) -> None:
        self.running = False

    def _drain_wakeup(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(4096)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # pyzmq silently retries poll() after a signal; a byte on this socketpair (written by
        # the C-level signal handler) makes the poll return so SIGTERM stops us at once.
        self._wake_r, wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._wake_w = wake_w
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self.add_reader(self._wake_r.fileno(), self._drain_wakeup)
        self.setup()
        self.every(HEARTBEAT_INTERVAL, self._heartbeat, first=0.0)
        self.send_sup(bus.request("actor.ready", {"pid": os.getpid(), "started": self.started},
                                  src=self.NAME, inc=self.inc))
        self.log.info("actor_ready")
        try:
            while self.running:
                timeout = 1000.0
                if self._timers:
                    timeout = max(0.0, (self._timers[0][0] - time.monotonic()) * 1000)
                # pyzmq retries poll() itself after a signal handler returns.
                events = self.poller.poll(timeout)
                for sock, ready in events:
                    if ready & zmq.POLLIN and (cb := self._readers.get(sock)) is not None:
                        cb()
                    if ready & zmq.POLLOUT and (cb := self._writers.get(sock)) is not None:
                        cb()
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, seq, interval, cb = heapq.heappop(self._timers)
                    if interval is not None:  # None: once (after())
                        heapq.heappush(self._timers, (now + interval, seq, interval, cb))
                    cb()
        finally:
            self.teardown()
            self.log.info("actor_stopped")
            self.ctx.destroy(linger=0)
        return 0


def main(actor_cls: type[Actor], argv: list[str] | None = None) -> int:
    # one argument, so no argparse (~0.4 MB in each of five processes)
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        sys.exit(f"usage: python -m actors.{actor_cls.NAME} RUN_DIR")
    run_dir = Path(args[0])
    actor = actor_cls(run_dir, load_config(run_dir))
    # A developer's profile of the data plane: WEAVE_PROFILE_DIR=/tmp/p weave launch ...; each
    # actor writes DIR/<name>.prof (cProfile, read with pstats) when it stops.
    profile_dir = os.environ.get("WEAVE_PROFILE_DIR")
    if not profile_dir:
        return actor.run()
    import cProfile

    prof = cProfile.Profile()
    try:
        return prof.runcall(actor.run)
    finally:
        prof.dump_stats(str(Path(profile_dir) / f"{actor_cls.NAME}.prof"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run an actor module, e.g. python -m actors.netconf RUN_DIR")
