"""`weave`: the command line. Each command is a short function; the router does the work.

Exit status: 0 ok, 1 operational failure, 2 usage error. Every error is one line on stderr.
The seed's single-dash options (`-password`, `-debug`) are accepted beside the double-dash ones.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import msgpack

import weavenet
from weavenet.cli import client, router_container
from weavenet.cli.containers import check_spec, docker_remove, docker_run, resolve
from weavenet.cli.report import build_report
from weavenet.cli.statusview import VIEWS, format_ps, format_status
from weavenet.mesh import peerlist
from weavenet.mesh.peer import PeerIdentityError, PeerName
from weavenet.runtime import bus, fastdp, log
from weavenet.runtime.address import shown
from weavenet.runtime.bus import FAILED, USAGE, BusError
from weavenet.runtime.control import (
    Attach,
    Connect,
    Detach,
    Expose,
    Forget,
    Hide,
    Ps,
    Status,
    Stop,
    app_cidr,
    peer_address,
)
from weavenet.runtime.defaults import CONTAINER_MTU, PORT, STATUS_ADDR, container_mtu
from weavenet.runtime.launch import MIN_MTU, LaunchConfig
from weavenet.runtime.request import Request, UsageError

LAUNCH_TIMEOUT = 40.0
ROUTER_MODES = ("container", "process")
STOP_TIMEOUT = 30.0


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


# -- validation: the router's own checks of the same fields ----------------------------------
def parse_cidrs(text: str) -> tuple[str, ...]:
    return tuple(str(app_cidr(part)) for part in text.split(",") if part) or (str(app_cidr(text)),)


def normalise_single_dash(argv: list[str]) -> list[str]:
    """The seed writes `-password X` and `-debug`; argparse wants two dashes for long options."""
    long_opts = {"-password", "-password-file", "-debug", "-name", "-nickname", "-port",
                 "-mtu", "-router", "-no-fastdp"}
    out = []
    for a in argv:
        head = a.split("=", 1)[0]
        out.append("-" + a if head in long_opts else a)
    return out


# -- context ----------------------------------------------------------------------------------
class Ctx:
    def __init__(self) -> None:
        self.run_dir = bus.run_dir_from_env()
        self.state_dir = bus.state_dir_from_env()

    def call(self, request: Request, timeout: float = 20.0) -> dict[str, Any]:
        return client.call(self.run_dir, request, timeout).body

    def running_pid(self) -> int | None:
        return client.router_pid(self.run_dir)


# -- commands -------------------------------------------------------------------------------
def cmd_launch(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave launch", description="start the router on this host")
    p.add_argument("args", nargs="*", metavar="[IP/CIDR] [PEER...]",
                   help="the weave network (router address/prefix), then peers host[:port]")
    p.add_argument("--password", help="encrypt with this network password (also -password, "
                   "WEAVE_PASSWORD); every peer needs the same one")
    p.add_argument("--password-file", help="read the password from this file")
    p.add_argument("--debug", action="store_true", help="debug logs, including per-packet ones")
    p.add_argument("--name", help="peer name (MAC-like); default: persisted in WEAVE_STATE_DIR")
    p.add_argument("--nickname", help="shown in status; default: WEAVE_NICKNAME or the hostname")
    p.add_argument("--port", type=int, default=PORT, help=f"TCP and UDP port ({PORT})")
    p.add_argument("--mtu", type=int, help="container MTU (default: the underlay's MTU - 50 "
                   f"with the fast datapath; {CONTAINER_MTU} with --no-fastdp, "
                   f"{container_mtu(True)} with a password)")
    p.add_argument("--no-fastdp", action="store_true",
                   help="never use the kernel fast datapath (VXLAN on UDP port+1): every peer "
                   "takes the sleeve (also WEAVE_NO_FASTDP=1)")
    p.add_argument("--status-addr", default=STATUS_ADDR, metavar="HOST:PORT",
                   help=f"the read-only HTTP server: metrics, status, report, topology page "
                   f"(default {STATUS_ADDR}; empty: none)")
    p.add_argument("--router", choices=ROUTER_MODES, default=default_router(),
                   help="container (default; WEAVE_ROUTER sets another): the router container "
                   f"{router_container.NAME} from {router_container.image()}; process: the "
                   "supervisor as a daemon on the host (development, tests)")
    # intermixed: the seed writes `weave launch IP -password PW PEER`, options between positionals
    a = p.parse_intermixed_args(normalise_single_dash(argv))
    rest = list(a.args)
    ip = rng = None
    if rest and "/" in rest[0]:
        iface = app_cidr(rest.pop(0))
        ip, rng = str(iface.ip), str(iface.network)
    peers = tuple(peer_address(x) for x in rest)
    if a.name is not None:
        try:
            PeerName(a.name)
        except PeerIdentityError as exc:
            raise UsageError(f"weave launch: {exc}") from None
    password = read_password(a.password, a.password_file)
    fastdp_on = not (a.no_fastdp or fastdp.env_disables(os.environ))
    config = LaunchConfig(
        ip=ip, range=rng, peers=peers, port=a.port,
        # A full-size frame must fit one datagram on a 1500-byte underlay; sealing costs 16 bytes.
        # With fastdp: the largest frame VXLAN carries on this host's underlay (the sleeve
        # carries those too, to peers that fell back, with PMTU signals to the senders).
        mtu=a.mtu or default_mtu(password is not None, fastdp_on),
        name=a.name, fastdp=fastdp_on,
        # the container has no environment of ours: the nickname is settled here
        nickname=a.nickname if a.router == "process" else
        a.nickname or os.environ.get("WEAVE_NICKNAME"),
        debug=a.debug, state_dir=str(ctx.state_dir), encryption=password is not None,
        status_addr=a.status_addr,
    )
    try:
        LaunchConfig.from_body(config.to_body())  # the supervisor's checks, before it starts
    except UsageError as exc:
        raise UsageError(f"weave launch: {exc.reason}") from None
    pid = ctx.running_pid()
    if pid is not None:
        raise BusError(FAILED, f"weave is already running (pid {pid}); `weave stop` first")
    if a.router == "container":
        return start_router_container(ctx, config, password)
    return start_router(ctx, config, password)


def default_router() -> str:
    mode = os.environ.get("WEAVE_ROUTER") or "container"
    if mode not in ROUTER_MODES:
        raise UsageError(f"weave launch: WEAVE_ROUTER={shown(mode)} is not one of "
                         f"{', '.join(ROUTER_MODES)}")
    return mode


def read_password(given: str | None, path: str | None) -> bytes | None:
    """The network password from --password, --password-file or WEAVE_PASSWORD, in that order."""
    if given is not None and path is not None:
        raise UsageError("weave launch: give --password or --password-file, not both")
    if path is not None:
        try:
            data = Path(path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise UsageError(f"weave launch: cannot read {shown(path)}: {exc.strerror}") from None
    elif given is not None:
        data = given.encode()
    elif os.environ.get("WEAVE_PASSWORD"):
        data = os.environ["WEAVE_PASSWORD"].encode()
    else:
        return None
    if not data:
        raise UsageError("weave launch: the password is empty")
    return data


def prepare_dirs(ctx: Ctx) -> None:
    bus.Endpoints(ctx.run_dir).prepare()
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ctx.state_dir, 0o700)


def start_router(ctx: Ctx, config: LaunchConfig, password: bytes | None = None) -> int:
    prepare_dirs(ctx)
    fd, cfg_path = tempfile.mkstemp(prefix="launch-", dir=ctx.run_dir)
    with os.fdopen(fd, "wb") as f:
        f.write(msgpack.packb(config.to_body()))
    here = str(Path(__file__).resolve().parent.parent)
    pythonpath = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    # The supervisor is a daemon: its own session, so the terminal's signals never reach it.
    # The password goes through a pipe, never argv or the environment, so `ps` cannot show it.
    env = {k: v for k, v in os.environ.items() if k != "WEAVE_PASSWORD"}
    env["PYTHONPATH"] = pythonpath
    argv = [sys.executable, "-m", "supervisor", "--run-dir", str(ctx.run_dir),
            "--state-dir", str(ctx.state_dir), "--config", cfg_path]
    with open(ctx.state_dir / "supervisor.stderr", "ab") as errlog:
        proc = subprocess.Popen(
            argv + (["--password-stdin"] if password else []),
            stdin=subprocess.PIPE if password else subprocess.DEVNULL, stdout=errlog,
            stderr=errlog, start_new_session=True, close_fds=True, env=env,
        )
    if password and proc.stdin is not None:
        with proc.stdin:
            proc.stdin.write(password)

    def exited() -> str | None:
        if proc.poll() is None:
            return None
        return (f"the router exited at start (status {proc.returncode}); "
                f"see {ctx.state_dir / 'supervisor.stderr'}")

    return wait_ready(ctx, exited)


def start_router_container(ctx: Ctx, config: LaunchConfig, password: bytes | None) -> int:
    """The router container (``weavenet.cli.router_container``), then the same readiness wait
    as a router process."""
    docker_client = router_container.client()
    # before anything is written: a missing image leaves no trace
    router_container.ensure_image(docker_client, router_container.image())
    prepare_dirs(ctx)
    # the supervisor of a container Docker restarts must not undo a `weave forget` made since
    peerlist.record_launch(ctx.state_dir, config.peers)
    spec = router_container.run_spec(
        config, ctx.run_dir, ctx.state_dir, os.environ.get("DOCKER_HOST"),
        router_container.write_password(ctx.state_dir, password))
    container = router_container.start(docker_client, spec)
    return wait_ready(ctx, lambda: router_container.exit_reason(container))


def wait_ready(ctx: Ctx, exited: Callable[[], str | None]) -> int:
    """Until every actor runs (0), one failed, or the router exited (``exited``'s reason)."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while time.monotonic() < deadline:
        reason = exited()
        if reason is not None:
            raise BusError(FAILED, reason)
        try:
            st = ctx.call(Status(), timeout=2)
        except BusError:
            time.sleep(0.1)
            continue
        states = {x["name"]: x["state"] for x in st["actors"]}
        failed = [n for n, s in states.items() if s == "failed"]
        if failed:
            raise BusError(FAILED, f"the router started but {', '.join(failed)} failed; "
                           "see `weave logs`")
        if all(s == "running" for s in states.values()):
            return 0
        time.sleep(0.1)
    raise BusError(FAILED, "the router did not become ready in time; see `weave logs`")


def _target_args(prog: str, argv: list[str]) -> tuple[tuple[str, ...], str]:
    p = Parser(prog=prog)
    p.add_argument("cidrs", metavar="IP/CIDR[,IP/CIDR...]")
    p.add_argument("container", metavar="CONTAINER")
    a = p.parse_args(argv)
    return parse_cidrs(a.cidrs), check_spec(a.container)


def cmd_attach(ctx: Ctx, argv: list[str]) -> int:
    cidrs, spec = _target_args("weave attach", argv)
    ctx.call(Status())  # a clear "not running" before touching Docker
    ctx.call(Attach(resolve(spec), cidrs))
    return 0


def cmd_detach(ctx: Ctx, argv: list[str]) -> int:
    cidrs, spec = _target_args("weave detach", argv)
    ctx.call(Status())
    ctx.call(Detach(resolve(spec), cidrs))
    return 0


def cmd_run(ctx: Ctx, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: weave run IP/CIDR[,IP/CIDR...] <docker run args>",
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    cidrs = parse_cidrs(argv[0])
    if len(argv) < 2:
        raise UsageError("weave run: missing docker run arguments (at least an image)")
    # Check everything the router can check before a container exists, so that a refusal
    # leaves nothing behind.
    ctx.call(Attach(None, cidrs, check_only=True))
    cid = docker_run(argv[1:])
    try:
        ctx.call(Attach(resolve(cid), cidrs))
    except BusError:
        docker_remove(cid)
        raise
    print(cid)
    return 0


def cmd_expose(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave expose")
    p.add_argument("cidr", metavar="IP/CIDR")
    cidr = str(app_cidr(p.parse_args(argv).cidr))
    try:
        ctx.call(Expose(cidr))
    except BusError as exc:
        from weavenet.host import exposenat  # late: pyroute2 is slow to import

        # The router container's /proc/sys is read-only (Docker's rule; no --sysctl is allowed
        # with the host's network): the CLI, on the same host and network, switches forwarding
        # on and asks again (expose is idempotent). Only then: a refusal changes nothing.
        if exposenat.FORWARDING_ERROR not in exc.reason:
            raise
        try:
            exposenat.enable_forwarding()
        except exposenat.HostNetError as err:
            raise BusError(FAILED, str(err)) from None
        ctx.call(Expose(cidr))
    return 0


def cmd_hide(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave hide")
    p.add_argument("cidr", metavar="IP/CIDR")
    ctx.call(Hide(str(app_cidr(p.parse_args(argv).cidr))))
    return 0


def cmd_connect(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave connect")
    p.add_argument("peers", nargs="+", metavar="PEER")
    ctx.call(Connect(tuple(peer_address(x) for x in p.parse_args(argv).peers)))
    return 0


def cmd_forget(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave forget")
    p.add_argument("peers", nargs="+", metavar="PEER")
    ctx.call(Forget(tuple(peer_address(x) for x in p.parse_args(argv).peers)))
    return 0


def cmd_status(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave status")
    p.add_argument("view", nargs="?", choices=sorted(VIEWS),
                   help="one table instead of the summary")
    p.add_argument("--json", action="store_true",
                   help="the router's raw status, or with a view that part of `weave report`")
    a = p.parse_args(argv)
    st = ctx.call(Status())
    if a.view is None:
        print(json.dumps(st, indent=2, sort_keys=True) if a.json else format_status(st))
    elif a.json:
        print(json.dumps(build_report(st)[a.view], indent=2, sort_keys=True))
    else:
        print(VIEWS[a.view](build_report(st)))
    return 0


def cmd_report(ctx: Ctx, argv: list[str]) -> int:
    Parser(prog="weave report").parse_args(argv)
    print(json.dumps(build_report(ctx.call(Status())), indent=2, sort_keys=True))
    return 0


def cmd_ps(ctx: Ctx, argv: list[str]) -> int:
    Parser(prog="weave ps").parse_args(argv)
    print(format_ps(ctx.call(Ps())), end="")
    return 0


def cmd_version(ctx: Ctx, argv: list[str]) -> int:
    Parser(prog="weave version").parse_args(argv)
    print(f"weave script {weavenet.__version__}")
    try:
        print(f"weave router {ctx.call(Status(), timeout=5)['version']}")
    except BusError:
        print("weave router not running")
    return 0


def cmd_logs(ctx: Ctx, argv: list[str]) -> int:
    p = Parser(prog="weave logs")
    p.add_argument("-f", "--follow", action="store_true")
    a = p.parse_args(argv)
    path = log.log_path(ctx.state_dir)
    if not path.exists():
        raise BusError(FAILED, f"no logs yet ({path} does not exist)")
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer)
        sys.stdout.flush()
        while a.follow:
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


def stop_router(ctx: Ctx) -> bool:
    container = router_container.find()
    if container is not None and container.status in ("running", "restarting"):
        router_container.stop(container)
        return True
    pid = ctx.running_pid()
    if pid is None:
        return False
    try:
        ctx.call(Stop(), timeout=5)
    except BusError:
        os.kill(pid, 15)  # the control socket is gone or wedged; SIGTERM does the same
    deadline = time.monotonic() + STOP_TIMEOUT
    while client.router_pid(ctx.run_dir) == pid and time.monotonic() < deadline:
        time.sleep(0.1)
    if client.router_pid(ctx.run_dir) == pid:
        raise BusError(FAILED, f"the router (pid {pid}) did not stop in {STOP_TIMEOUT:.0f}s")
    return True


def default_mtu(encrypted: bool, fastdp_on: bool) -> int:
    if encrypted or not fastdp_on:
        return container_mtu(encrypted)
    from weavenet.host import vxlan

    try:
        return max(vxlan.fastdp_mtu(), MIN_MTU)
    except OSError:
        return container_mtu(False)


def remove_fastdp() -> None:
    """Cross-host traffic ends with the router: the kernel's VXLAN device (and every entry
    towards a peer with it) goes; the bridge stays, so local containers keep talking. A
    relaunch makes it again."""
    from weavenet.host import vxlan
    from weavenet.host.netns import HostNetError

    try:
        vxlan.delete()
    except (HostNetError, OSError) as exc:
        print(f"weave: could not remove the fast datapath device: {exc}", file=sys.stderr)


def cmd_stop(ctx: Ctx, argv: list[str]) -> int:
    Parser(prog="weave stop").parse_args(argv)
    if not stop_router(ctx):
        raise client.NotRunning("weave is not running")
    remove_fastdp()
    return 0


def cmd_reset(ctx: Ctx, argv: list[str]) -> int:
    Parser(prog="weave reset").parse_args(argv)
    stop_router(ctx)
    container = router_container.find()
    if container is not None:
        router_container.remove(container)  # the image stays
    from weavenet.host import bridge, exposenat

    exposenat.remove_all()
    remove_fastdp()
    bridge.teardown()
    for d in (ctx.run_dir, ctx.state_dir):
        shutil.rmtree(d, ignore_errors=True)
    return 0


COMMANDS: dict[str, tuple[Callable[[Ctx, list[str]], int], str]] = {
    "launch": (cmd_launch, "[IP/CIDR] [PEER...] [-password PW] [-debug]  start the router"
               " (its container; --router process: host processes)"),
    "run": (cmd_run, "IP/CIDR[,...] <docker run args>  docker run -d, then attach"),
    "attach": (cmd_attach, "IP/CIDR[,...] CONTAINER  put a running container on a network"),
    "detach": (cmd_detach, "IP/CIDR[,...] CONTAINER  take it off again"),
    "expose": (cmd_expose, "IP/CIDR  give this host an address on an application network,"
               " with the NAT of a gateway"),
    "hide": (cmd_hide, "IP/CIDR  take that address and its NAT away (no-op if not exposed)"),
    "connect": (cmd_connect, "PEER...  add peers (host[:port]) at run time"),
    "forget": (cmd_forget, "PEER...  drop peers"),
    "status": (cmd_status, "[peers|connections|routes] [--json]  the router, its actors, "
               "peers and containers; or one table"),
    "report": (cmd_report, "everything the router knows, as one JSON document (for jq)"),
    "ps": (cmd_ps, "containers on the weave network, with MACs and addresses"),
    "version": (cmd_version, "versions of this script and the running router"),
    "logs": (cmd_logs, "[-f]  the router's JSON logs (filter with jq)"),
    "stop": (cmd_stop, "stop the router (its container too) and the kernel path to peers; "
             "local containers keep talking"),
    "reset": (cmd_reset, "stop and remove every trace: the router container (not its image),"
              " bridge, veths, VXLAN device, NAT rules, state"),
}

CONTAINER_HELP = """\
CONTAINER is a Docker id or name, or pid:N / netns:/path for namespaces outside Docker.
Environment: WEAVE_RUN_DIR (default /run/weave), WEAVE_STATE_DIR (default /var/lib/weave),
DOCKER_HOST, WEAVE_PASSWORD, WEAVE_NO_FASTDP, WEAVE_ROUTER (`weave launch`'s default: container
or process). Exit status: 0 ok, 1 failure, 2 usage error."""


def usage() -> str:
    lines = ["usage: weave COMMAND [ARGS]", ""]
    lines += [f"  weave {name:8} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines + ["", CONTAINER_HELP])


def fail(message: str, code: int) -> int:
    # The last guard for "one line": a reason from the router may quote what a user typed.
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    print(f"weave: {line}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return fail(f"unknown command {shown(name)}; see `weave --help`", 2)
    try:
        return COMMANDS[name][0](Ctx(), rest)
    except BusError as exc:
        return fail(exc.reason, 2 if exc.code == USAGE else 1)
    except KeyboardInterrupt:
        return 130
    except PermissionError as exc:
        return fail(f"permission denied: {exc.filename or exc} (weave needs root)", 1)
    except OSError as exc:
        return fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 1)


if __name__ == "__main__":
    sys.exit(main())
