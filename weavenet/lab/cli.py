"""`weave-lab`: build, inspect, use and remove a lab from the shell.

    weave-lab up N [--no-docker] [--prefix P] [--nat I,J] [--no-router-image]
                                                  build N hosts (they outlive this command);
                                                  hosts I, J behind a masquerading NAT; each
                                                  dockerd gets the router image (built once)
    weave-lab down [--prefix P]                   remove every trace of the lab
    weave-lab status [--prefix P] [--json]        what is up
    weave-lab exec [--prefix P] HOST -- CMD...    run CMD on HOST (host1 or 1); its exit code
    weave-lab cut|heal [--prefix P] A B           drop / restore underlay traffic between hosts
    weave-lab loss [--prefix P] HOST PERCENT      drop PERCENT % of what HOST receives (0: stop)
    weave-lab image [--output FILE] [--prefix P] [--rebuild] [--verbose]
                                                  build weavenet/weave:<version> offline (in
                                                  lab P's host1, else a temporary lab) and
                                                  write its `docker save` archive to FILE
    weave-lab demo [ARGS...]                      the demo, if weavenet.lab.demo exists

Exit codes: 0 ok, 1 operational failure, 2 usage error; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, NoReturn

from weavenet.lab import procs
from weavenet.lab import router_image as weave_image
from weavenet.lab.errors import LabError
from weavenet.lab.lab import MAX_HOSTS, PREFIX_RE, Lab

PROG = "weave-lab"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _n_hosts(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HOSTS:
        raise argparse.ArgumentTypeError(f"N must be a number 1..{MAX_HOSTS}, not {text!r}")
    return int(text)


def _prefix(text: str) -> str:
    if not PREFIX_RE.match(text):
        raise argparse.ArgumentTypeError(f"bad prefix {text!r}: 1-12 chars, a-z then a-z0-9")
    return text


def _host_numbers(text: str) -> list[int]:
    parts = [p.removeprefix("host") for p in text.split(",")]
    if not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"not host numbers (e.g. 3 or 2,3): {text!r}")
    return [int(p) for p in parts]


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"not a percentage from 0 to 100: {text!r}")
    return value


def _parser(exec_remainder: bool = True) -> _Parser:
    parser = _Parser(prog=PROG, description="Simulated weave hosts on this machine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    prefix_help = "lab name: namespace prefix and /run/wl/<prefix> (default wl)"

    up = sub.add_parser("up", help="build a lab of N hosts")
    up.add_argument("n_hosts", type=_n_hosts, metavar="N")
    up.add_argument("--no-docker", action="store_true", help="no dockerd per host")
    up.add_argument("--nat", type=_host_numbers, default=[], metavar="I[,J...]",
                    help="put these hosts (by number) behind a masquerading NAT router")
    up.add_argument("--prefix", type=_prefix, default="wl", help=prefix_help)
    up.add_argument("--no-router-image", action="store_true",
                    help="do not load (or build) the router image into the dockerds")

    down = sub.add_parser("down", help="remove the lab")
    down.add_argument("--prefix", type=_prefix, default="wl", help=prefix_help)

    status = sub.add_parser("status", help="show labs")
    status.add_argument("--prefix", type=_prefix, help="only this lab")
    status.add_argument("--json", action="store_true")

    ex = sub.add_parser("exec", help="run a command on a host")
    ex.add_argument("--prefix", type=_prefix, default="wl", help=prefix_help)
    ex.add_argument("host", metavar="HOST")
    if exec_remainder:
        ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    else:
        ex.set_defaults(cmd=[])

    for name, what in (("cut", "drop underlay traffic between"), ("heal", "restore traffic of")):
        p = sub.add_parser(name, help=f"{what} two hosts")
        p.add_argument("--prefix", type=_prefix, default="wl", help=prefix_help)
        p.add_argument("a", metavar="HOST")
        p.add_argument("b", metavar="HOST")
    loss = sub.add_parser("loss", help="drop a share of the underlay packets a host receives")
    loss.add_argument("--prefix", type=_prefix, default="wl", help=prefix_help)
    loss.add_argument("host", metavar="HOST")
    loss.add_argument("percent", type=_percent, metavar="PERCENT", help="0..100; 0 removes it")
    img = sub.add_parser("image", help="build the router image offline, save it to a file")
    img.add_argument("--output", type=Path, metavar="FILE",
                     help="where to write the `docker save` archive (default: only the cache)")
    img.add_argument("--prefix", type=_prefix,
                     help="build in this lab's host1 (default: a temporary one-host lab)")
    img.add_argument("--rebuild", action="store_true", help="ignore a cached archive")
    img.add_argument("--verbose", action="store_true", help="show the docker build output")
    sub.add_parser("demo", help="run the demo (arguments go to it)", add_help=False)
    return parser


def _need_root() -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root")


def _up(args: argparse.Namespace) -> int:
    _need_root()
    archive = None
    if not args.no_docker and not args.no_router_image:
        built = weave_image.build_offline(log=_progress)
        print(built.summary(), file=sys.stderr)
        archive = built.archive
    lab = Lab(args.n_hosts, prefix=args.prefix, docker=not args.no_docker, nat=args.nat,
              router_image=archive)
    lab.up()
    for host in lab.hosts:
        nat = f"  (behind NAT, seen as {host.lan_ip})" if host.router_ns else ""
        print(f"{host.name}  {host.ns}  {host.ip}{nat}")
    return 0


def _progress(line: str) -> None:
    if line.startswith("Step "):
        print(line, file=sys.stderr)


def _image(args: argparse.Namespace) -> int:
    _need_root()
    log = (lambda line: print(line, file=sys.stderr)) if args.verbose else _progress
    built = weave_image.build_offline(args.prefix, rebuild=args.rebuild, log=log)
    if args.output is not None:
        try:
            shutil.copyfile(built.archive, args.output)
        except OSError as e:
            raise LabError(f"cannot write {args.output}: {e.strerror}") from e
    print(built.summary() + (f"; written to {args.output}" if args.output else ""))
    return 0


def _down(args: argparse.Namespace) -> int:
    _need_root()
    try:
        lab = Lab.load(args.prefix)
    except LabError:
        # No record: still sweep namespaces named after the prefix (a crashed up()).
        lab = Lab(1, prefix=args.prefix)
    lab.down()
    return 0


def _describe(lab: Lab) -> dict[str, Any]:
    pids = {p["what"]: p for p in lab._state()["procs"]}
    hosts = []
    for host in lab.hosts:
        d = pids.get(f"dockerd {host.name}")
        running = d is not None and procs.alive(procs.ProcRef.from_json(d))
        hosts.append({
            "name": host.name, "ns": host.ns, "ip": host.ip, "lan_ip": host.lan_ip,
            "dockerd_pid": d["pid"] if d else None, "dockerd_running": running,
            "DOCKER_HOST": host.docker_host if lab.docker else None,
            "WEAVE_RUN_DIR": str(host.run_dir), "WEAVE_STATE_DIR": str(host.state_dir),
        })
    return {"prefix": lab.prefix, "status": lab.status, "docker": lab.docker,
            "base_dir": str(lab.base_dir), "faults": lab.faults, "hosts": hosts}


def _status(args: argparse.Namespace) -> int:
    labs = [Lab.load(args.prefix)] if args.prefix else Lab.find_all()
    described = [_describe(lab) for lab in labs]
    if args.json:
        print(json.dumps(described, indent=1))
        return 0
    if not described:
        print("no labs")
    for lab in described:
        print(f"lab {lab['prefix']}: {lab['status']}, {len(lab['hosts'])} hosts, "
              f"docker {'on' if lab['docker'] else 'off'}, {lab['base_dir']}")
        for h in lab["hosts"]:
            docker = ""
            if lab["docker"]:
                state = "running" if h["dockerd_running"] else "NOT running"
                docker = f"  dockerd {h['dockerd_pid']} {state}"
            print(f"  {h['name']}  {h['ns']}  {h['ip']}{docker}")
        for fault in lab["faults"]:
            print(f"  fault: {' '.join(map(str, fault))}")
    return 0


def _exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise _UsageError("exec needs a command: weave-lab exec HOST -- CMD...")
    _need_root()
    host = Lab.load(args.prefix).host(args.host)
    argv = host.argv(cmd)
    try:
        # Replace this process: stdio, signals and the exit code are the command's own.
        os.execvpe(argv[0], argv, host.env())
    except OSError as e:
        raise LabError(f"cannot run {argv[0]}: {e.strerror}") from e


def _fault(args: argparse.Namespace) -> int:
    _need_root()
    lab = Lab.load(args.prefix)
    (lab.cut if args.command == "cut" else lab.heal)(args.a, args.b)
    return 0


def _loss(args: argparse.Namespace) -> int:
    _need_root()
    Lab.load(args.prefix).lose(args.host, args.percent)
    return 0


def _demo(args: list[str]) -> int:
    if importlib.util.find_spec("weavenet.lab.demo") is None:
        raise LabError("demo not available")
    demo = importlib.import_module("weavenet.lab.demo")
    return int(demo.main(args) or 0)


_COMMANDS = {"up": _up, "down": _down, "status": _status, "exec": _exec,
             "cut": _fault, "heal": _fault, "loss": _loss, "image": _image}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["demo"]:
            # Everything after `demo` is the demo's, options included.
            return _demo(argv[1:])
        command: list[str] = []
        if argv[:1] == ["exec"] and "--" in argv:
            # Split at the first "--" ourselves, so options may follow HOST and the
            # command's own options never meet our parser.
            cut = argv.index("--")
            argv, command = argv[:cut], argv[cut + 1 :]
        args = _parser(exec_remainder=not command).parse_args(argv)
        if command:
            args.cmd = command
        return _COMMANDS[args.command](args)
    except _UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except LabError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the process boundary: one line, never a traceback
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
