"""The control requests: what the `weave` CLI asks the router, one class per request.

Each class's docstring is its specification: what it asks, the body it sends, the reply body,
which process answers and the CLI command that sends it. The CLI sends them on ``ctl.sock``; the
supervisor answers ``status`` and ``stop`` itself and relays the others, unchanged, to the
actor named by the class's ``HANDLER`` (``ROUTES``), whose ``@handles`` table decodes them.

The field checks (:func:`app_cidr`, :func:`peer_address`) are the ones the CLI applies to its
arguments too, so a command line and a body are held to the same rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from weavenet.runtime import address
from weavenet.runtime.request import (
    SUPERVISOR,
    Request,
    UsageError,
    flag,
    mapping,
    optional_integer,
    optional_text,
    text,
    texts,
)

NETCONF = "netconf"
GOSSIP = "gossip"

MAX_CIDRS = 64  # addresses one container gets in one request
MAX_PEERS = 1024  # peers named in one connect/forget
MAX_PATH = 4096  # PATH_MAX: a namespace file
MAX_KEY = MAX_PATH + 16  # a container id, or "pid:N" / "netns:PATH" as typed
MAX_CONTAINER_ID = 128  # Docker's are 64 hex digits
MAX_PID = 2**22  # the kernel's pid_max ceiling


# -- field checks shared with the CLI -----------------------------------------------------------
def app_cidr(value: object) -> ipaddress.IPv4Interface:
    """An application network address: IPv4 only, not the network's own or broadcast address."""
    try:
        iface = address.parse_cidr(value)
    except address.AddressError as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(iface, ipaddress.IPv4Interface):
        raise UsageError(f"{address.shown(value)}: only IPv4 application networks are supported")
    net = iface.network
    if net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address):
        raise UsageError(f"{address.shown(value)} is the network's own or broadcast address")
    return iface


def peer_address(value: object) -> str:
    """``host:port`` with the default port filled in; a usage error if it is not an address."""
    try:
        return address.normalize(value)
    except address.AddressError as exc:
        raise UsageError(str(exc)) from None


def _cidrs(body: Mapping[str, Any]) -> tuple[str, ...]:
    raw = texts(body, "cidrs", MAX_CIDRS, address.MAX_TEXT_LEN, min_items=1)
    return tuple(str(app_cidr(c)) for c in raw)


# -- containers -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """The network namespace a request is about, as the CLI resolved it.

    Body ``{"netns": path, "key": str, "label": str, "container_id": str|None, "pid": int|None}``:
    ``netns`` is a namespace file (``/proc/PID/ns/net`` or a bind mount), ``key`` what the
    attachment is recorded under (the container id, or ``pid:N`` / ``netns:PATH`` as typed),
    ``label`` what the user typed, for messages.
    """

    netns: str
    key: str
    label: str
    container_id: str | None = None
    pid: int | None = None

    def to_body(self) -> dict[str, Any]:
        return {"netns": self.netns, "key": self.key, "label": self.label,
                "container_id": self.container_id, "pid": self.pid}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(
            netns=text(body, "netns", MAX_PATH, printable=True),
            key=text(body, "key", MAX_KEY, printable=True),
            label=optional_text(body, "label", MAX_KEY, printable=True) or "",
            container_id=optional_text(body, "container_id", MAX_CONTAINER_ID, printable=True),
            pid=optional_integer(body, "pid", 1, MAX_PID),
        )


def _target(body: Mapping[str, Any]) -> Target:
    return Target.from_body(mapping(body, "target"))


@dataclass(frozen=True)
class Attach(Request):
    """Give a container addresses on application networks (a veth on the weave bridge).

    Body ``{"target": Target, "cidrs": [IP/CIDR, ...]}``; with ``check_only`` the body is
    ``{"cidrs": [...], "check_only": true}`` and nothing changes: netconf only checks that the
    addresses are inside the weave network and not in use (``weave run`` asks before it creates
    a container, so that a refusal leaves nothing behind). Reply ``{"mac": str, "cidrs": [...]}``
    (the container's interface and all its addresses), ``{}`` for a check.
    Handled by netconf; sent by ``weave attach IP/CIDR[,...] CONTAINER`` and ``weave run``.
    """

    TYPE = "attach"
    HANDLER = NETCONF

    target: Target | None
    cidrs: tuple[str, ...]
    check_only: bool = False

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.target is not None:
            body["target"] = self.target.to_body()
        body["cidrs"] = list(self.cidrs)
        if self.check_only:
            body["check_only"] = True
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        check_only = flag(body, "check_only")
        target = None if check_only and body.get("target") is None else _target(body)
        return cls(target, _cidrs(body), check_only)


@dataclass(frozen=True)
class Detach(Request):
    """Take addresses away from a container; its interface goes with the last one.

    Body ``{"target": Target, "cidrs": [IP/CIDR, ...]}``; reply ``{"cidrs": [...]}``, the
    addresses it still has. A "failed" error if it does not have one of them.
    Handled by netconf; sent by ``weave detach IP/CIDR[,...] CONTAINER``.
    """

    TYPE = "detach"
    HANDLER = NETCONF

    target: Target
    cidrs: tuple[str, ...]

    def to_body(self) -> dict[str, Any]:
        return {"target": self.target.to_body(), "cidrs": list(self.cidrs)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(_target(body), _cidrs(body))


@dataclass(frozen=True)
class _HostAddress(Request):
    """A request about one address of this host; body ``{"cidr": IP/CIDR}``."""

    cidr: str

    def to_body(self) -> dict[str, Any]:
        return {"cidr": self.cidr}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        return cls(str(app_cidr(body.get("cidr"))))


@dataclass(frozen=True)
class Expose(_HostAddress):
    """Give this host an address on an application network (on the weave bridge).

    Body ``{"cidr": IP/CIDR}``; reply ``{}``. Refused ("failed") outside the weave network or
    when a container has the address. Handled by netconf; sent by ``weave expose IP/CIDR``.
    """

    TYPE = "expose"
    HANDLER = NETCONF


@dataclass(frozen=True)
class Hide(_HostAddress):
    """Take an address given by :class:`Expose` away from this host.

    Body ``{"cidr": IP/CIDR}``; reply ``{}``; "failed" if the host does not have it.
    Handled by netconf; sent by ``weave hide IP/CIDR``.
    """

    TYPE = "hide"
    HANDLER = NETCONF


@dataclass(frozen=True)
class Ps(Request):
    """The containers on the weave network.

    Body ``{}``; reply netconf's status: ``{"bridge", "bridge_mac", "mtu", "exposed": [cidr],
    "attachments": [{"key", "label", "container_id", "mac", "cidrs"}]}``, after dropping the
    containers that are gone. Handled by netconf; sent by ``weave ps``.
    """

    TYPE = "ps"
    HANDLER = NETCONF


# -- peers ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PeerAddresses(Request):
    """A request about peer addresses; body ``{"peers": [host[:port], ...]}``."""

    peers: tuple[str, ...]

    def to_body(self) -> dict[str, Any]:
        return {"peers": list(self.peers)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        raw = texts(body, "peers", MAX_PEERS, address.MAX_TEXT_LEN)
        for x in raw:
            peer_address(x)  # checked here; gossip fills in its own port when one is missing
        return cls(raw)


@dataclass(frozen=True)
class Connect(_PeerAddresses):
    """Add peers to dial, at run time.

    Body ``{"peers": [host[:port], ...]}`` (gossip fills in the router's port where none is
    given); reply ``{"peers": [...]}``, the addresses that were new.
    Handled by gossip; sent by ``weave connect PEER...``.
    """

    TYPE = "connect"
    HANDLER = GOSSIP


@dataclass(frozen=True)
class Forget(_PeerAddresses):
    """Stop dialling peers; an established connection to one of them is closed.

    Body ``{"peers": [host[:port], ...]}``; reply ``{"peers": [...]}``, the addresses that were
    known. Handled by gossip; sent by ``weave forget PEER...``.
    """

    TYPE = "forget"
    HANDLER = GOSSIP


# -- the router -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Status(Request):
    """The router's state, from the supervisor's memory (the actors' last heartbeats).

    Body ``{}``; reply ``{"version", "pid", "uptime", "range", "ip", "port", "encryption",
    "peer": {"name", "nickname"}, "actors": [{"name", "state", "pid", "uptime", "restarts",
    "last_exit", "status": {...}}]}``, where ``status`` is what that actor's ``status()`` said.
    Answered by the supervisor; sent by ``weave status`` (and by ``weave launch`` and
    ``weave version`` to see whether the router is up).
    """

    TYPE = "status"
    HANDLER = SUPERVISOR


@dataclass(frozen=True)
class Stop(Request):
    """Stop the router: actors in reverse start order, then the supervisor. Kernel state stays.

    Body ``{}``; reply ``{"stopping": true}``, sent before stopping.
    Answered by the supervisor; sent by ``weave stop`` and ``weave reset``.
    """

    TYPE = "stop"
    HANDLER = SUPERVISOR


CONTROL_REQUESTS: tuple[type[Request], ...] = (
    Attach, Detach, Expose, Hide, Ps, Connect, Forget, Status, Stop,
)
"""Every request the control socket accepts."""

ROUTES: dict[str, str] = {
    cls.TYPE: cls.HANDLER for cls in CONTROL_REQUESTS if cls.HANDLER != SUPERVISOR
}
"""Which actor answers which relayed request; the supervisor relays, it does not interpret."""
