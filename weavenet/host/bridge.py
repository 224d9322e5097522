"""The weave bridge in the host's network namespace: bridge, router port, addresses, status.

Process-free calls for the netconf actor, which runs inside the host's namespace (nsenter),
so everything here acts on the *current* namespace. Every call is an idempotent `ensure`:
a second call with the same arguments changes nothing, which is what lets a restarted
netconf replay its state. Calls open their own rtnetlink socket and close it, and return
plain values, never pyroute2 messages. Container attachment lives in `weavenet.host.veth`.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from weavenet.host import tap
from weavenet.host.netns import HostNetError, rtnl
from weavenet.host.tap import ROUTER_PORT
from weavenet.runtime import address
from weavenet.runtime.defaults import BRIDGE
from weavenet.runtime.defaults import CONTAINER_MTU as DEFAULT_MTU

HOST_VETH_PREFIX = "vethwepl"  # host side of a container's veth; see veth.host_veth_name
IFNAMSIZ = 16

RT_SCOPE_LINK = 253
_TAP_TYPE = 2  # IFLA_TUN_TYPE for IFF_TAP


class BridgeMissing(HostNetError):
    """The weave bridge does not exist (weave is not launched on this host)."""


# --- small netlink helpers shared with weavenet.host.veth ------------------------------------


def check_ifname(name: str) -> str:
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name:
        raise HostNetError(f"invalid interface name {name!r} (at most 15 characters)")
    return name


def parse_cidr(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    try:
        return address.parse_cidr(cidr)
    except address.AddressError as exc:
        raise HostNetError(str(exc)) from None


def get_link(ipr: IPRoute, name: str | None = None, index: int | None = None) -> Any | None:
    """The link message for `name` or `index`, or None when there is no such link."""
    try:
        if index is not None:
            return ipr.link("get", index=index)[0]
        return ipr.link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def link_kind(msg: Any) -> str | None:
    kind = msg.get(("linkinfo", "kind"))
    return str(kind) if kind is not None else None


def link_summary(msg: Any) -> dict[str, Any]:
    """A plain description of a link, safe to send over the bus."""
    return {
        "name": str(msg.get("ifname")),
        "ifindex": int(msg["index"]),
        "mac": str(msg.get("address")) if msg.get("address") else None,
        "kind": link_kind(msg),
        "mtu": int(msg.get("mtu") or 0),
        "up": bool(msg["flags"] & 1),
    }


def ensure_link_state(
    ipr: IPRoute, msg: Any, *, master: int | None = None, mtu: int | None = None
) -> None:
    """Set master / mtu where they differ, then bring the link up if it is down."""
    index = int(msg["index"])
    if master is not None and msg.get("master") != master:
        ipr.link("set", index=index, master=master)
    if mtu is not None and msg.get("mtu") != mtu:
        ipr.link("set", index=index, mtu=mtu)
    if not msg["flags"] & 1:
        ipr.link("set", index=index, state="up")


def add_address(ipr: IPRoute, index: int, cidr: str) -> bool:
    """Add `cidr` to link `index`; False when it was already there."""
    iface = parse_cidr(cidr)
    extra: dict[str, Any] = {}
    if iface.version == 4 and iface.network.prefixlen < 31:
        extra["broadcast"] = str(iface.network.broadcast_address)  # as `ip addr add ... brd +`
    try:
        ipr.addr("add", index=index, address=str(iface.ip),
                 prefixlen=iface.network.prefixlen, **extra)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise HostNetError(f"cannot add {cidr}: {exc.args[-1]}") from exc
    return True


def remove_address(ipr: IPRoute, index: int, cidr: str) -> bool:
    """Remove `cidr` from link `index`; False when it was not there."""
    iface = parse_cidr(cidr)
    if str(iface) not in link_addresses(ipr, index):
        return False
    try:
        ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code == errno.EADDRNOTAVAIL:  # removed under us
            return False
        raise
    return True


def link_addresses(ipr: IPRoute, index: int) -> list[str]:
    """Addresses on link `index` as normalised CIDRs, without IPv6 link-local ones
    (the kernel makes those itself; they are not application networks)."""
    out: list[str] = []
    for msg in ipr.addr("dump", index=index):
        addr = msg.get("address")
        if addr is None:
            continue
        iface = ipaddress.ip_interface(f"{addr}/{msg['prefixlen']}")
        if iface.version == 6 and iface.ip.is_link_local:
            continue
        out.append(str(iface))
    return out


def delete_link(ipr: IPRoute, index: int) -> bool:
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise
    return True


def require_bridge(ipr: IPRoute, name: str) -> int:
    msg = get_link(ipr, name)
    if msg is None:
        raise BridgeMissing(f"bridge {name} does not exist (is weave launched?)")
    if link_kind(msg) != "bridge":
        raise HostNetError(f"{name} exists but is a {link_kind(msg) or 'plain'} link, not a bridge")
    return int(msg["index"])


# --- the bridge ----------------------------------------------------------------------------

# STP off and no forward delay: a port must forward as soon as a container attaches, and the
# bridge has no loops (remote peers are reached through one router port). Multicast snooping
# off: the router port speaks for many remote hosts whose IGMP reports never cross this
# bridge, so snooping would starve remote listeners; weave floods multicast like broadcast.
# Ageing stays at the default: the router port learns remote MACs like any port.
_BRIDGE_SETTINGS = {"br_stp_state": 0, "br_forward_delay": 0, "br_mcast_snooping": 0}


def ensure_bridge(name: str = BRIDGE, mtu: int = DEFAULT_MTU) -> int:
    """Create (or reconcile) the weave bridge, up; return its ifindex."""
    check_ifname(name)
    with rtnl() as ipr:
        msg = get_link(ipr, name)
        if msg is None:
            try:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu, **_BRIDGE_SETTINGS)
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:  # created concurrently: reconcile below
                    raise HostNetError(f"cannot create bridge {name}: {exc.args[-1]}") from exc
            else:
                msg = get_link(ipr, name)
                assert msg is not None
                # Setting the MAC marks it as chosen by us; otherwise the kernel rewrites the
                # bridge MAC to its lowest port MAC as containers come and go, and peers that
                # cached the MAC of an exposed host address would lose it.
                ipr.link("set", index=msg["index"], address=msg.get("address"))
            msg = get_link(ipr, name)
            assert msg is not None
        if link_kind(msg) != "bridge":
            raise HostNetError(f"{name} exists but is a {link_kind(msg) or 'plain'} link")
        differs = {
            key: value
            for key, value in _BRIDGE_SETTINGS.items()
            if msg.get(("linkinfo", "data", key)) != value
        }
        if differs:
            ipr.link("set", index=msg["index"], kind="bridge", **differs)
        ensure_link_state(ipr, msg, mtu=mtu)
        return int(msg["index"])


def ensure_router_port(
    bridge: str = BRIDGE, name: str = ROUTER_PORT, mtu: int = DEFAULT_MTU
) -> int:
    """Create (or reconcile) the persistent multi-queue TAP through which the router joins
    the bridge.

    The TAP is created persistent so it stays on the bridge while capture and the forwarder
    restart; each attaches its own queue with `weavenet.host.tap.open_tap_handle`, which sets
    IFF_VNET_HDR per open (it need not be set at creation). A single-queue TAP of that name
    (made by an older router: persistent devices outlive it) cannot take a second queue, so it
    is replaced by a multi-queue one with its MAC, on the bridge with `mtu`, up. Returns the
    TAP's ifindex.
    """
    check_ifname(name)
    with rtnl() as ipr:
        bridge_index = require_bridge(ipr, bridge)
        msg = get_link(ipr, name)
        if msg is not None and _is_tap(msg) and not _multi_queue(msg, name):
            delete_link(ipr, int(msg["index"]))
            msg = _create_tap(ipr, name, mac=msg.get("address"))
        elif msg is None:
            msg = _create_tap(ipr, name)
        if not _is_tap(msg):
            raise HostNetError(f"{name} exists but is not a TAP device")
        ensure_link_state(ipr, msg, master=bridge_index, mtu=mtu)
        return int(msg["index"])


def _is_tap(msg: Any) -> bool:
    return link_kind(msg) == "tun" and msg.get(("linkinfo", "data", "tun_type")) == _TAP_TYPE


def _multi_queue(msg: Any, name: str) -> bool:
    said = msg.get(("linkinfo", "data", "tun_multi_queue"))  # IFLA_TUN_MULTI_QUEUE, Linux >= 4.15
    if said is not None:
        return bool(said)
    try:  # an older kernel: ask the device itself (a single-queue TAP refuses with EINVAL)
        os.close(tap.open_tap_handle(name, detached=True).fd)
    except tap.TapError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise HostNetError(str(exc)) from exc
    return True


def _create_tap(ipr: IPRoute, name: str, mac: str | None = None) -> Any:
    try:
        tap.create_persistent_tap(name)
    except tap.TapError as exc:
        raise HostNetError(str(exc)) from exc
    msg = get_link(ipr, name)
    if msg is None:
        raise HostNetError(f"TAP {name} vanished right after creation")
    if mac is not None and msg.get("address") != mac:
        ipr.link("set", index=msg["index"], address=mac)
        msg = get_link(ipr, name)
        if msg is None:
            raise HostNetError(f"TAP {name} vanished right after creation")
    return msg


# --- the host's own addresses on application networks -------------------------------------


def expose(cidr: str, bridge: str = BRIDGE) -> bool:
    """Give this host `cidr` on the bridge; True when the address was added now."""
    parse_cidr(cidr)
    with rtnl() as ipr:
        return add_address(ipr, require_bridge(ipr, bridge), cidr)


def hide(cidr: str, bridge: str = BRIDGE) -> bool:
    """Remove `cidr` from the bridge; True when it was there."""
    parse_cidr(cidr)
    with rtnl() as ipr:
        msg = get_link(ipr, bridge)
        if msg is None:
            return False
        return remove_address(ipr, int(msg["index"]), cidr)


# --- status ----------------------------------------------------------------------------------


def bridge_addresses(bridge: str = BRIDGE) -> list[str]:
    with rtnl() as ipr:
        msg = get_link(ipr, bridge)
        return [] if msg is None else link_addresses(ipr, int(msg["index"]))


def bridge_ports(bridge: str = BRIDGE) -> list[dict[str, Any]]:
    """Links enslaved to the bridge: name, ifindex, mac, kind (veth, tun, vxlan), mtu, up."""
    with rtnl() as ipr:
        msg = get_link(ipr, bridge)
        if msg is None:
            return []
        index = int(msg["index"])
        return [link_summary(m) for m in ipr.link("dump") if m.get("master") == index]


# --- teardown --------------------------------------------------------------------------------


def teardown(bridge: str = BRIDGE, router_port: str = ROUTER_PORT) -> list[str]:
    """Delete the container veths on the bridge, the router TAP and the bridge.

    Deleting a veth's host side deletes its container side too. Host-side veths with our
    name prefix are removed even when enslaved to nothing (e.g. the bridge was deleted by
    hand). Other ports (a VXLAN device) are only released by the bridge's deletion: their
    owner removes them. Returns the names of the links deleted; [] when nothing existed.
    """
    removed: list[str] = []
    with rtnl() as ipr:
        bridge_msg = get_link(ipr, bridge)
        bridge_index = int(bridge_msg["index"]) if bridge_msg is not None else None
        for msg in ipr.link("dump"):
            name = str(msg.get("ifname"))
            kind = link_kind(msg)
            ours = (
                (bridge_index is not None and msg.get("master") == bridge_index
                 and kind in ("veth", "tun"))
                or (kind == "veth" and name.startswith(HOST_VETH_PREFIX)
                    and msg.get("master") is None)
                or (kind == "tun" and name == router_port)
            )
            if ours and delete_link(ipr, int(msg["index"])):
                removed.append(name)
        if bridge_index is not None and delete_link(ipr, bridge_index):
            removed.append(bridge)
    return removed
