"""weave-supervisor: the router's root process.

It spawns the actors (netconf, capture, crypto, forwarder, gossip) as separate processes:
netconf first (the bridge and the TAP the others use), the others together once it said
``actor.ready`` (each copes with a neighbour that is not up yet: ZeroMQ connects before the
other side binds, and gossip and the forwarder ask each other for their state when the other
becomes ready), so a launch takes two start-up times, not five; watches their heartbeats; restarts a
crashed or silent actor under a RestartPolicy; owns the CLI's control socket and the single
event PUB socket. Kernel state (bridge, veths, addresses) belongs to no process, so nothing
here tears it down: a restart of any actor, or of the whole router, leaves containers alone.

Sockets (all under WEAVE_RUN_DIR): ctl.sock ROUTER (CLI), actors.sock ROUTER (actors' DEALERs),
events.sock PUB. And the router's UDP socket (port 6783), opened here once and inherited by the
forwarder, which reads it, and the crypto actor, which sends the datagrams it seals on it
(``weavenet.dataplane.udp_socket``): both send from the one port, and a restarted forwarder
finds the socket with its queued datagrams. Where the port cannot be had, it is logged and the
forwarder opens it itself, and fails as it always did. Unless ``status_addr`` is empty, a
thread serves the read-only HTTP server of ``weavenet.web.server`` (metrics, status, report,
topology page) on it, getting the status by asking ctl.sock like the CLI, so it cannot change
anything.

Messages: on ctl.sock the control requests of ``weavenet.runtime.control``; ``status`` and
``stop`` are answered here (``CTL_REQUESTS``), the others relayed unchanged to the actor their
class names (``REQUEST_ROUTES``), whose reply goes back to the CLI. On actors.sock
``actor.ready``, ``actor.heartbeat``, ``event``, ``request`` (one actor asking another) and
``secret.get`` (``ACTOR_MESSAGES``), and replies to relayed requests. The launch configuration
(``weavenet.runtime.launch.LaunchConfig``) is written to config.msgpack for the actors.

How it is started: `weave launch --router process` runs it as a daemon with a config file and
the password on stdin; the router container (``weavenet.cli.router_container``) runs it as the
entrypoint with the launch options as arguments and ``--password-file``, so Docker can restart
it as it was. It waits for orphans too (``reap_orphans``), so as PID 1 of a PID namespace it
leaves no zombies, and it stops its actors on SIGTERM (`docker stop`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

import weavenet
from weavenet.cli import client
from weavenet.dataplane.udp_port import UDP_FD_ENV, open_udp
from weavenet.mesh import peerlist
from weavenet.mesh.peer import Peer
from weavenet.runtime import bus, control, log
from weavenet.runtime.bus import Envelope
from weavenet.runtime.launch import LaunchConfig, add_launch_options, body_from_options
from weavenet.runtime.request import Request, UsageError
from weavenet.runtime.restart import RestartPolicy, RestartSettings
from weavenet.web.server import StatusServer

UDP_ACTORS = frozenset(("forwarder", "crypto"))  # inherit the router's UDP socket
ACTOR_ORDER = ("netconf", "capture", "crypto", "forwarder", "gossip")  # stopped in reverse
START_STAGES = (("netconf",), ("capture", "crypto", "forwarder", "gossip"))
READY_TIMEOUT = 20.0
HEARTBEAT_TIMEOUT = 6.0
HTTP_STATUS_TIMEOUT = 5.0  # an HTTP request waiting for the control socket's status answer
REQUEST_TIMEOUT = 15.0
STOP_GRACE = 5.0

SECRET_HOLDERS = ("gossip",)
ROUTER_MODES = ("process", "container")

# Which actor answers which CLI request, from the request classes; the supervisor relays, it
# does not interpret.
REQUEST_ROUTES = control.ROUTES


@dataclass
class ActorProc:
    name: str
    policy: RestartPolicy
    proc: subprocess.Popen[bytes] | None = None
    state: str = "stopped"  # starting | running | restarting | failed | stopped
    started_wall: float = 0.0
    started_mono: float = 0.0
    last_heartbeat: float = 0.0
    restart_at: float | None = None
    inc: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    exit_reason: str = ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def describe(self, now_wall: float) -> dict[str, Any]:
        alive = self.state in ("starting", "running")
        return {
            "name": self.name,
            "state": self.state,
            "pid": self.pid if alive else None,
            "uptime": round(now_wall - self.started_wall, 1) if alive else 0.0,
            "restarts": self.policy.restarts,
            "last_exit": self.exit_reason,
            "status": self.status,
        }


@dataclass
class Pending:
    client: bytes
    actor: str
    deadline: float


class Supervisor:
    def __init__(self, run_dir: Path, config: LaunchConfig,
                 settings: RestartSettings | None = None, secret: bytes | None = None,
                 router: str = "process") -> None:
        self.run_dir = run_dir
        self.router = router
        self.secret = secret
        self.config = config
        self.endpoints = bus.Endpoints(run_dir)
        self.state_dir = Path(config.state_dir)
        self.inc = int.from_bytes(os.urandom(8), "big") >> 1
        self.started = time.time()
        self.log = log.configure(actor="supervisor", inc=self.inc, state_dir=self.state_dir,
                                 debug=config.debug, stderr=config.foreground)
        self.actors = {n: ActorProc(n, RestartPolicy(settings)) for n in ACTOR_ORDER}
        self.start_queue = [list(stage) for stage in START_STAGES]
        self.pending: dict[str, Pending] = {}
        self.stopping = False
        self.ctx = zmq.Context()
        self.http: StatusServer | None = None
        self.udp: socket.socket | None = None

    # -- sockets ----------------------------------------------------------------------------
    def bind(self) -> None:
        self.endpoints.prepare()
        for path in self.endpoints.socket_files():
            path.unlink(missing_ok=True)
        with open(self.endpoints.config, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(msgpack.packb(self.config.to_body()))
        self.ctl = self._socket(zmq.ROUTER, self.endpoints.ctl)
        self.bus = self._socket(zmq.ROUTER, self.endpoints.actors)
        # A restarted actor reconnects with the same identity; let it take over the old route.
        self.bus.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.pub = self._socket(zmq.PUB, self.endpoints.events)
        self.endpoints.restrict_sockets()
        try:
            self.udp = open_udp(self.config.port)
        except OSError as exc:
            self.log.error("udp_bind_failed", port=self.config.port,
                           reason=exc.strerror or str(exc))
        self.endpoints.pidfile.write_text(f"{os.getpid()}\n")

    def serve_http(self) -> None:
        """The read-only HTTP server, if configured. A port already taken costs the metrics
        and the page, not the router: logged, and the router runs on."""
        if not self.config.status_addr:
            return
        try:
            self.http = StatusServer(self.config.status_addr, self._http_status).start()
        except OSError as exc:
            self.log.error("status_server_failed", address=self.config.status_addr,
                           reason=exc.strerror or str(exc))
            return
        self.log.info("status_server_listening", address=self.config.status_addr)

    def _http_status(self) -> dict[str, Any]:
        # on the HTTP thread: through the control socket, exactly as `weave status` asks
        return client.call(self.run_dir, control.Status(), HTTP_STATUS_TIMEOUT).body

    def _socket(self, kind: int, addr: str) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.bind(addr)
        return s

    def emit(self, topic: str, data: dict[str, Any]) -> None:
        env = bus.request("event", {"topic": topic, "data": data}, src="supervisor", inc=self.inc)
        self.pub.send_multipart([topic.encode(), bus.encode(env)])

    # -- actors -----------------------------------------------------------------------------
    def spawn(self, a: ActorProc) -> None:
        env = dict(os.environ)
        # Actors import `actors.*` and `weavenet.*` from wherever this file was imported.
        here = str(Path(__file__).resolve().parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        env.pop(UDP_FD_ENV, None)
        # One malloc arena per actor, not one per thread: ZeroMQ's I/O thread allocates every
        # received message in an arena of its own, whose freed memory the main thread cannot
        # reuse. Under an encrypted 64-byte flood with TCP beside it the receiving router
        # peaked 3-5 MB lower with one (157-158 MB against 161-163), throughput unchanged.
        env.setdefault("MALLOC_ARENA_MAX", "1")
        fds: tuple[int, ...] = ()
        if self.udp is not None and a.name in UDP_ACTORS:
            fds = (self.udp.fileno(),)
            env[UDP_FD_ENV] = str(fds[0])
        a.proc = subprocess.Popen(
            [sys.executable, "-m", f"actors.{a.name}", str(self.run_dir)],
            env=env, stdin=subprocess.DEVNULL, close_fds=True, pass_fds=fds,
        )
        a.state = "starting"
        a.started_wall = time.time()
        a.started_mono = time.monotonic()
        a.last_heartbeat = a.started_mono
        a.restart_at = None
        a.status = {}
        a.policy.on_start()
        self.log.info("actor_started", name=a.name, child=a.proc.pid)
        self.emit("actor.started", {"name": a.name, "pid": a.proc.pid})

    def on_exit(self, a: ActorProc, reason: str) -> None:
        a.exit_reason = reason
        a.proc = None
        for rid, p in list(self.pending.items()):
            if p.actor == a.name:
                self._answer(rid, p, error=(bus.UNAVAILABLE, f"{a.name} exited ({reason})"))
        if self.stopping:
            a.state = "stopped"
            return
        delay = a.policy.on_exit()
        if delay is None:
            a.state = "failed"
            self.log.error("actor_failed", name=a.name, reason=reason,
                           restarts=a.policy.restarts)
            self.emit("actor.failed", {"name": a.name, "reason": reason})
            for stage in self.start_queue:
                if a.name in stage:
                    stage.remove(a.name)
            return
        a.state = "restarting"
        a.restart_at = time.monotonic() + delay
        self.log.warning("actor_exited", name=a.name, reason=reason, restart_in=round(delay, 2))
        self.emit("actor.exited", {"name": a.name, "reason": reason})

    def reap(self) -> None:
        now = time.monotonic()
        for a in self.actors.values():
            if a.proc is None:
                continue
            rc = a.proc.poll()
            if rc is not None:
                reason = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
                self.on_exit(a, reason)
            elif a.state == "starting" and now - a.started_mono > READY_TIMEOUT:
                self.log.error("actor_not_ready", name=a.name)
                a.proc.kill()
            elif a.state == "running" and now - a.last_heartbeat > HEARTBEAT_TIMEOUT:
                # A wedged actor is as bad as a dead one; kill it so the restart path takes over.
                self.log.error("actor_silent", name=a.name)
                a.proc.kill()

    def reap_orphans(self) -> None:
        """Orphans become ours when this is PID 1 (a container with a PID namespace of its own)
        or a subreaper, e.g. the tool a killed actor was running: wait for them, so none stays
        a zombie. Our actors are left to Popen, which reaps them with their exit status."""
        ours = {a.proc.pid for a in self.actors.values() if a.proc is not None}
        while True:
            try:
                # WNOWAIT: look first, so an actor's status is never taken from Popen
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in ours:
                return
            os.waitpid(info.si_pid, os.WNOHANG)

    def schedule(self) -> None:
        now = time.monotonic()
        for a in self.actors.values():
            if a.state == "restarting" and a.restart_at is not None and now >= a.restart_at:
                self.spawn(a)
        # Ordered first start: the next actor starts once the previous one is ready.
        if self.start_queue and not any(a.state == "starting" for a in self.actors.values()):
            for name in self.start_queue.pop(0):
                a = self.actors[name]
                if a.state == "stopped":
                    self.spawn(a)

    # -- messages ---------------------------------------------------------------------------
    def on_actor_message(self) -> None:
        while True:
            try:
                ident, data = self.bus.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:
                continue
            name = ident.decode(errors="replace")
            a = self.actors.get(name)
            try:
                env = bus.decode(data)
            except bus.EnvelopeError as exc:
                self.log.warning("bad_envelope", src=name, reason=str(exc))
                continue
            if a is None:
                continue
            if env.is_reply:
                p = self.pending.pop(env.in_reply_to or "", None)
                if p is not None and p.client.startswith(b"@"):  # relayed between actors
                    self.bus.send_multipart([p.client[1:], bus.encode(env)])
                elif p is not None:
                    self.ctl.send_multipart([p.client, bus.encode(env)])
                continue
            handler = self.ACTOR_MESSAGES.get(env.type)
            if handler is not None:
                handler(self, a, env, data)

    def on_ready(self, a: ActorProc, env: Envelope, data: bytes) -> None:
        """``actor.ready`` {pid, started}: the actor's setup is done; the next one may start."""
        a.state = "running"
        a.inc = env.inc
        a.last_heartbeat = time.monotonic()
        self.endpoints.restrict_sockets()  # the data-plane sockets it may have bound
        self.log.info("actor_ready", name=a.name, child=env.body.get("pid"))
        self.emit("actor.ready", {"name": a.name, "pid": env.body.get("pid")})

    def on_heartbeat(self, a: ActorProc, env: Envelope, data: bytes) -> None:
        """``actor.heartbeat`` {pid, started, status}: alive; its status for `weave status`."""
        a.last_heartbeat = time.monotonic()
        st = env.body.get("status")
        if isinstance(st, dict):
            a.status = st

    def on_event(self, a: ActorProc, env: Envelope, data: bytes) -> None:
        """``event`` {topic, data}: published as is, under its topic."""
        topic = env.body.get("topic")
        if isinstance(topic, str):
            self.pub.send_multipart([topic.encode(), data])

    def on_secret_get(self, a: ActorProc, env: Envelope, data: bytes) -> None:
        """``secret.get`` {} -> {secret}: only the actors that derive session keys get it."""
        allowed = a.name in SECRET_HOLDERS
        body = {"secret": self.secret if allowed else None}
        self.bus.send_multipart([a.name.encode(), bus.encode(
            bus.reply(env, body, src="supervisor", inc=self.inc))])

    def relay_between_actors(self, a: ActorProc, env: Envelope, data: bytes = b"") -> None:
        """An actor asking another one (body: {to, type, body}); the reply goes back to it."""
        target = self.actors.get(str(env.body.get("to")))
        inner = bus.Envelope(type=str(env.body.get("type")), body=env.body.get("body") or {},
                             id=env.id, src=a.name, inc=a.inc, ts=env.ts)
        if target is not None and target.state == "running":
            self.pending[env.id] = Pending(b"@" + a.name.encode(), target.name,
                                           time.monotonic() + REQUEST_TIMEOUT)
            self.bus.send_multipart([target.name.encode(), bus.encode(inner)])
            return
        # Say so rather than stay silent: the asking actor decides whether to retry.
        state = target.state if target is not None else "unknown"
        r = bus.reply(env, src="supervisor", inc=self.inc,
                      error=(bus.UNAVAILABLE, f"{env.body.get('to')} is {state}"))
        self.bus.send_multipart([a.name.encode(), bus.encode(r)])

    def on_ctl(self) -> None:
        while True:
            try:
                frames = self.ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            client, data = frames
            try:
                env = bus.decode(data)
            except bus.EnvelopeError as exc:
                self.log.warning("bad_ctl_envelope", reason=str(exc))
                continue
            self.handle_ctl(client, env)

    # What an actor sends the supervisor, by envelope type (replies are matched to requests).
    ACTOR_MESSAGES: dict[str, Callable[[Supervisor, ActorProc, Envelope, bytes], None]] = {
        "actor.ready": on_ready,
        "actor.heartbeat": on_heartbeat,
        "event": on_event,
        "request": relay_between_actors,
        "secret.get": on_secret_get,
    }

    def handle_ctl(self, client: bytes, env: Envelope) -> None:
        def answer(body: dict[str, Any] | None = None,
                   error: tuple[str, str] | None = None) -> None:
            r = bus.reply(env, body, src="supervisor", inc=self.inc, error=error)
            self.ctl.send_multipart([client, bus.encode(r)])

        own = self.CTL_REQUESTS.get(env.type)
        if own is not None:
            request, handler = own
            try:
                body = handler(self, request.from_body(env.body))
            except UsageError as exc:
                answer(error=(exc.code, exc.reason))
                return
            answer(body)
        elif env.type in REQUEST_ROUTES:
            target = self.actors[REQUEST_ROUTES[env.type]]
            if target.state != "running":
                answer(error=(bus.UNAVAILABLE,
                              f"the {target.name} actor is {target.state}; try again shortly"))
                return
            self.pending[env.id] = Pending(client, target.name,
                                           time.monotonic() + REQUEST_TIMEOUT)
            self.bus.send_multipart([target.name.encode(), bus.encode(env)])
        else:
            answer(error=(bus.USAGE, f"unknown request {env.type!r}"))

    def on_status(self, req: control.Status) -> dict[str, Any]:
        return self.status()

    def on_stop(self, req: control.Stop) -> dict[str, Any]:
        # the reply is sent at once; the loop ends (and the sockets close) only after it
        self.stopping = True
        return {"stopping": True}

    # The control requests the supervisor answers itself; the others go by REQUEST_ROUTES.
    CTL_REQUESTS: dict[str, tuple[type[Request], Callable[[Supervisor, Any], dict[str, Any]]]] = {
        control.Status.TYPE: (control.Status, on_status),
        control.Stop.TYPE: (control.Stop, on_stop),
    }

    def _answer(self, rid: str, p: Pending, error: tuple[str, str]) -> None:
        self.pending.pop(rid, None)
        stub = Envelope(type="reply", id=rid)
        r = bus.reply(stub, src="supervisor", inc=self.inc, error=error)
        if p.client.startswith(b"@"):
            self.bus.send_multipart([p.client[1:], bus.encode(r)])
        else:
            self.ctl.send_multipart([p.client, bus.encode(r)])

    def expire_pending(self) -> None:
        now = time.monotonic()
        for rid, p in list(self.pending.items()):
            if now > p.deadline:
                self._answer(rid, p, error=(bus.FAILED, f"{p.actor} did not answer in time"))

    def status(self) -> dict[str, Any]:
        now = time.time()
        return {
            "version": weavenet.__version__,
            "pid": os.getpid(),
            "router": self.router,
            "uptime": round(now - self.started, 1),
            "range": self.config.range,
            "ip": self.config.ip,
            "port": self.config.port,
            "encryption": self.config.encryption,
            "peer": {"name": self.config.peer_name, "nickname": self.config.nickname},
            "actors": [a.describe(now) for a in self.actors.values()],
        }

    # -- lifecycle --------------------------------------------------------------------------
    def run(self) -> int:
        self.bind()
        self.serve_http()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.log.info("router_starting", version=weavenet.__version__,
                      range=self.config.range, peers=list(self.config.peers))
        poller = zmq.Poller()
        poller.register(self.ctl, zmq.POLLIN)
        poller.register(self.bus, zmq.POLLIN)
        # A dead actor is noticed at once, not at the next poll timeout: SIGCHLD writes a byte
        # (set_wakeup_fd) that wakes the poll; every moment the actor is down costs traffic.
        wake_r, wake_w = socket.socketpair()
        for s in (wake_r, wake_w):
            s.setblocking(False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        poller.register(wake_r.fileno(), zmq.POLLIN)
        try:
            while not self.stopping:
                for sock, _ in poller.poll(self._poll_timeout()):
                    if sock is self.ctl:
                        self.on_ctl()
                    elif sock is self.bus:
                        self.on_actor_message()
                    else:
                        with contextlib.suppress(BlockingIOError):
                            wake_r.recv(4096)
                self.reap()
                self.reap_orphans()
                self.schedule()
                self.expire_pending()
        finally:
            signal.set_wakeup_fd(-1)
            wake_r.close()
            wake_w.close()
            self.shutdown()
        return 0

    def _poll_timeout(self) -> float:
        """Milliseconds until the next restart is due, at most 100 (the housekeeping tick)."""
        due = [a.restart_at for a in self.actors.values() if a.restart_at is not None]
        if not due:
            return 100.0
        return max(0.0, min(100.0, (min(due) - time.monotonic()) * 1000))

    def _on_signal(self, *_: Any) -> None:
        self.stopping = True

    def shutdown(self) -> None:
        self.stopping = True
        self.log.info("router_stopping")
        if self.http is not None:
            self.http.close()
        for name in reversed(ACTOR_ORDER):
            a = self.actors[name]
            if a.proc is None:
                continue
            a.proc.terminate()
            try:
                a.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.log.warning("actor_kill", name=name)
                a.proc.kill()
                a.proc.wait()
            a.proc = None
            a.state = "stopped"
        self.ctx.destroy(linger=0)
        if self.udp is not None:
            self.udp.close()
        for path in self.endpoints.socket_files():
            path.unlink(missing_ok=True)
        self.endpoints.pidfile.unlink(missing_ok=True)
        self.endpoints.config.unlink(missing_ok=True)
        self.log.info("router_stopped")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="weave-supervisor", description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", default=str(bus.run_dir_from_env()))
    p.add_argument("--state-dir", default=str(bus.state_dir_from_env()))
    p.add_argument("--config", help="msgpack launch config written by `weave launch` (deleted "
                   "once read); the options below override its fields")
    p.add_argument("--foreground", action="store_true",
                   help="also log to stderr (every actor too: `docker logs weave`)")
    p.add_argument("--router", choices=ROUTER_MODES, default="process",
                   help="how `weave launch` runs this router, for `weave status`")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the network password from standard input")
    p.add_argument("--password-file", help="read the network password from this file (kept: "
                   "a restarted router container reads it again)")
    add_launch_options(p)
    return p.parse_args(argv)


def derive_apart(raw: bytes) -> bytes:
    """The password stretched (Argon2id, ``weavenet.crypto.keys.Password``) in a forked child,
    so that this long-lived process never maps libsodium and cffi (~1.6 MB RSS each router).
    Called before any thread or ZeroMQ context exists, which is what makes fork safe here."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: derive, write, exit without running the parent's cleanup
        code = 1
        try:
            os.close(r)
            from weavenet.crypto.keys import Password

            secret = Password(raw).derived_secret()
            with os.fdopen(w, "wb") as out:
                out.write(secret)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as inp:
        secret = inp.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not secret:
        sys.exit("weave-supervisor: deriving the key from the password failed")
    return secret


def read_password(args: argparse.Namespace) -> bytes | None:
    if args.password_file:
        try:
            raw = Path(args.password_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            sys.exit(f"weave-supervisor: cannot read the password file: {exc.strerror}")
    elif args.password_stdin:
        raw = sys.stdin.buffer.read().rstrip(b"\r\n")
    else:
        return None
    if not raw:
        sys.exit("weave-supervisor: the password is empty")
    return raw


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    body: dict[str, Any] = {}
    if args.config:
        with open(args.config, "rb") as f:
            body = msgpack.unpackb(f.read(), raw=False)
        os.unlink(args.config)
    body.setdefault("state_dir", args.state_dir)
    body.update(body_from_options(args))
    try:
        config = LaunchConfig.from_body(body)
    except UsageError as exc:
        sys.exit(f"weave-supervisor: bad launch config: {exc.reason}")
    raw = read_password(args)
    # Stretched once here; actors only ever see the derived value, over the bus.
    secret = None if raw is None else derive_apart(raw)
    Path(config.state_dir).mkdir(parents=True, exist_ok=True)
    os.chmod(config.state_dir, 0o700)
    # The identity is settled once, before any actor starts, so they all agree on it.
    me = Peer.create(config.state_dir, name=config.name,
                     nickname=config.nickname or os.environ.get("WEAVE_NICKNAME"))
    if args.router == "process":  # the router container's CLI records its launch itself
        peerlist.record_launch(config.state_dir, config.peers)
    config = dataclasses.replace(
        config, foreground=args.foreground,
        encryption=secret is not None, peer_name=str(me.name), nickname=me.nickname)
    return Supervisor(Path(args.run_dir), config, secret=secret, router=args.router).run()


if __name__ == "__main__":
    sys.exit(main())
