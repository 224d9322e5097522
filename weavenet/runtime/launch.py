"""The launch configuration: what `weave launch` hands the supervisor, and it to its actors.

The CLI writes it (msgpack, a file the supervisor deletes after reading); the supervisor settles
the peer identity and whether there is a password, then writes it as ``config.msgpack`` in the
run directory, where every actor reads it at start (``weavenet.runtime.actor.load_config``).
Every field has a default, so a partial body (a test's, an older CLI's) still decodes; a field
that is present is checked by the same readers as the control requests, and a bad one is a
usage error (the CLI's own checks of ``--port`` and ``--mtu`` are these).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from weavenet.runtime import defaults
from weavenet.runtime.address import AddressError, normalize
from weavenet.runtime.control import peer_address
from weavenet.runtime.request import (
    UsageError,
    flag,
    integer,
    optional_text,
    text,
    texts,
)

if TYPE_CHECKING:  # the CLI's; actors need not load argparse
    import argparse

MIN_MTU = 576  # the IPv4 minimum every host must accept
MAX_MTU = 65535
MAX_PEERS = 1024
MAX_NAME = 255


@dataclass(frozen=True)
class LaunchConfig:
    """One router's settings, fixed for its lifetime.

    ``ip``/``range``: the router's own address and the weave network (``weave launch IP/CIDR``),
    or None; ``peers``: ``host:port`` to dial at start; ``port``: TCP and UDP port; ``mtu``: the
    containers' MTU; ``name``/``nickname``: what the user asked for (``name`` None: the persisted
    one); ``fastdp``: accepted, not built; ``debug``: per-packet logs; ``state_dir``: logs,
    identity, attachments; ``encryption``: a password was given (the secret itself never travels
    here); ``status_addr``: ``host:port`` of the read-only HTTP server, "" for none. Set by the
    supervisor: ``peer_name`` (the settled identity; ``nickname`` too) and
    ``foreground`` (the supervisor also logs to stderr).
    """

    ip: str | None = None
    range: str | None = None
    peers: tuple[str, ...] = ()
    port: int = defaults.PORT
    mtu: int = defaults.CONTAINER_MTU
    name: str | None = None
    nickname: str | None = None
    fastdp: bool = True
    debug: bool = False
    state_dir: str = defaults.STATE_DIR
    encryption: bool = False
    status_addr: str = defaults.STATUS_ADDR
    foreground: bool = False
    peer_name: str | None = None

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        return ipaddress.ip_network(self.range) if self.range else None

    def to_body(self) -> dict[str, Any]:
        # the order `weave launch` has always written, then what the supervisor adds
        return {
            "ip": self.ip, "range": self.range, "peers": list(self.peers), "port": self.port,
            "mtu": self.mtu, "name": self.name, "nickname": self.nickname, "fastdp": self.fastdp,
            "debug": self.debug, "state_dir": self.state_dir, "encryption": self.encryption,
            "foreground": self.foreground, "peer_name": self.peer_name,
            "status_addr": self.status_addr,
        }

    def to_args(self) -> list[str]:
        """What `weave launch` chose, as weave-supervisor's options (``add_launch_options``):
        the router container's arguments, replayed as they are whenever Docker restarts it."""
        args = ["--port", str(self.port), "--mtu", str(self.mtu)]
        if self.ip is not None and self.range is not None:
            args += ["--ip", self.ip, "--range", self.range]
        for p in self.peers:
            args += ["--peer", p]
        if self.name is not None:
            args += ["--name", self.name]
        if self.nickname is not None:
            args += ["--nickname", self.nickname]
        if not self.fastdp:
            args.append("--no-fastdp")
        if self.debug:
            args.append("--debug")
        if self.status_addr != defaults.STATUS_ADDR:
            args += ["--status-addr", self.status_addr]
        return args

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        d = cls()
        ip = optional_text(body, "ip", 64)
        rng = optional_text(body, "range", 64)
        try:
            if ip is not None:
                ipaddress.ip_address(ip)
            if rng is not None:
                ipaddress.ip_network(rng)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        peers = texts(body, "peers", MAX_PEERS, 300) if body.get("peers") is not None else ()
        for p in peers:
            peer_address(p)  # checked, kept as given: gossip fills in its port where none is
        return cls(
            ip=ip,
            range=rng,
            peers=peers,
            port=check_port(body.get("port", d.port)),
            mtu=check_mtu(body.get("mtu", d.mtu)),
            name=optional_text(body, "name", MAX_NAME),
            # an empty nickname has always meant "the default one"
            nickname=optional_text(body, "nickname", MAX_NAME, empty=True),
            fastdp=flag(body, "fastdp", d.fastdp),
            debug=flag(body, "debug", d.debug),
            state_dir=text(body, "state_dir", 4096) if "state_dir" in body else d.state_dir,
            encryption=flag(body, "encryption", d.encryption),
            foreground=flag(body, "foreground", d.foreground),
            peer_name=optional_text(body, "peer_name", MAX_NAME),
            status_addr=check_status_addr(body.get("status_addr", d.status_addr)),
        )


def add_launch_options(p: argparse.ArgumentParser) -> None:
    """weave-supervisor's options for the fields ``to_args`` writes."""
    p.add_argument("--ip", help="the router's address on the weave network")
    p.add_argument("--range", help="the weave network (CIDR)")
    p.add_argument("--peer", action="append", dest="peers", metavar="HOST[:PORT]",
                   help="a peer to dial (repeat)")
    p.add_argument("--port", type=int)
    p.add_argument("--mtu", type=int)
    p.add_argument("--name", help="peer name")
    p.add_argument("--nickname")
    p.add_argument("--no-fastdp", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--status-addr", metavar="HOST:PORT",
                   help="the read-only HTTP server's address (default: the launch config's, "
                   f"{defaults.STATUS_ADDR}); empty: none")


def body_from_options(a: argparse.Namespace) -> dict[str, Any]:
    """The fields given as options, as a body ``from_body`` checks (absent ones stay absent)."""
    body: dict[str, Any] = {k: getattr(a, k) for k in ("ip", "range", "peers", "port", "mtu",
                                                       "name", "nickname", "status_addr")
                            if getattr(a, k) is not None}
    if a.no_fastdp:
        body["fastdp"] = False
    if a.debug:
        body["debug"] = True
    return body


def check_port(value: object) -> int:
    """The router's TCP and UDP port (``--port``)."""
    return integer({"port": value}, "port", 1, 65535)


def check_mtu(value: object) -> int:
    """The containers' MTU (``--mtu``)."""
    return integer({"mtu": value}, "mtu", MIN_MTU, MAX_MTU)



def check_status_addr(value: object) -> str:
    """``--status-addr``: ``host[:port]`` (port 6782 by default), or "" for no HTTP server."""
    if value == "":
        return ""
    try:
        return normalize(value, defaults.STATUS_PORT)
    except AddressError as exc:
        raise UsageError(f"status address: {exc}") from None
