"""Peer addresses (``host[:port]``) and IP/CIDR text: the one parser every module uses.

A host is an IPv4 or IPv6 literal or a DNS name; IPv6 with a port is written ``[v6]:port``.
Input comes from the command line and from the network, so everything is length- and
character-checked, and error messages show the input escaped (a newline or escape sequence in
a name never reaches a terminal or a log raw).
"""

from __future__ import annotations

import ipaddress
import re

from weavenet.runtime.defaults import PORT

MAX_HOST_LEN = 253  # the longest DNS name
MAX_TEXT_LEN = MAX_HOST_LEN + 8  # "[" host "]:" port
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")  # "_" is common in container names


class AddressError(ValueError):
    """Malformed address text; ``str()`` is one printable line."""


def shown(text: object, limit: int = 64) -> str:
    """``text`` as it may appear in a one-line message: quoted, escaped, cut at ``limit``."""
    s = str(text)
    cut = s[:limit]
    return repr(cut) + ("..." if len(s) > limit else "")


def _check_host(host: str, original: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > MAX_HOST_LEN or not all(_LABEL.match(x) for x in name.split(".")):
        raise AddressError(f"{shown(original)} is not a host name or IP address")
    return name.lower()


def parse_host_port(text: object, default_port: int = PORT) -> tuple[str, int]:
    """``(host, port)`` from ``host``, ``host:port``, ``v6``, ``[v6]`` or ``[v6]:port``."""
    if not isinstance(text, str):
        raise AddressError(f"{shown(text)} is not an address")
    s = text.strip()
    if not s or len(s) > MAX_TEXT_LEN:
        raise AddressError(f"{shown(text)} is not a peer address (host[:port])")
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise AddressError(f"{shown(text)} is not a peer address ([v6]:port)")
        port = rest[1:] if rest else ""
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise AddressError(f"{shown(text)}: {shown(host)} is not an IPv6 address") from None
    elif s.count(":") > 1:  # a bare IPv6 address: no port
        host, port = s, ""
    else:
        host, _, port = s.partition(":")
    if port == "":
        port_n = default_port
    elif port.isascii() and port.isdigit() and 0 < int(port) < 65536:
        port_n = int(port)
    else:
        raise AddressError(f"{shown(text)}: invalid port {shown(port)}")
    return _check_host(host, text), port_n


def format_host_port(host: str, port: int) -> str:
    """The canonical text: ``host:port``, or ``[v6]:port``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize(text: object, default_port: int = PORT) -> str:
    """``host:port`` with the default port filled in (raises AddressError)."""
    return format_host_port(*parse_host_port(text, default_port))


def parse_ipv4_endpoint(text: object) -> tuple[str, int] | None:
    """``(ip, port)`` for an ``a.b.c.d:port`` received from a peer, else None (never raises)."""
    try:
        host, port = parse_host_port(text, default_port=0)
        ip = ipaddress.IPv4Address(host)
    except ValueError:  # AddressError is one
        return None
    return (str(ip), port) if port else None


def parse_cidr(text: object) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """An address with its prefix length (``10.0.1.1/24``); raises AddressError."""
    if not isinstance(text, str) or len(text) > 64 or "/" not in text:
        raise AddressError(f"{shown(text)} is not IP/CIDR (e.g. 10.0.1.1/24)")
    try:
        return ipaddress.ip_interface(text.strip())
    except ValueError:
        raise AddressError(f"{shown(text)} is not a valid IP/CIDR") from None
