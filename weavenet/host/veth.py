"""Attaching containers to the weave bridge: a veth pair, `ethwe` inside, addresses on it.

The host side stays in the current (host) namespace, enslaved to the bridge; the container
side is created directly inside the container's namespace under its final name (the veth
peer carries IFLA_NET_NS_FD), so there is no moment where a half-made `ethwe` sits in the
host namespace under a temporary name. A container on several application networks has one
`ethwe` with one address per network. Calls are idempotent; a failure part-way through an
attach deletes the veth it created.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from weavenet.host.bridge import (
    BRIDGE,
    DEFAULT_MTU,
    HOST_VETH_PREFIX,
    RT_SCOPE_LINK,
    add_address,
    check_ifname,
    delete_link,
    ensure_link_state,
    get_link,
    link_addresses,
    link_kind,
    parse_cidr,
    remove_address,
    require_bridge,
)
from weavenet.host.netns import HostNetError, Namespace, entered, open_netns_fd, rtnl

CONTAINER_IFNAME = "ethwe"
# Namespace inode numbers come from the kernel's proc inum allocator, which starts at
# 0xF0000000 and is unique among live namespaces; the offset fits in 7 hex digits, so
# "vethwepl" + 7 = 15 characters names the host side after the namespace, whichever path
# (pid:N, a docker id, netns:/path) the caller used to reach it.
_PROC_DYNAMIC_FIRST = 0xF0000000


def host_veth_name(ns_inode: int) -> str:
    return f"{HOST_VETH_PREFIX}{(ns_inode - _PROC_DYNAMIC_FIRST) & 0xFFFFFFF:x}"


def host_veth_name_for(netns_path: str) -> str:
    fd, inode = open_netns_fd(netns_path)
    os.close(fd)
    return host_veth_name(inode)


def _host_side(ipr: IPRoute, ns: Namespace, container_link: Any) -> Any:
    """The host-side peer of the container's veth, checked both ways (indexes are per
    namespace, so a bare index match could name an unrelated link)."""
    peer_index = container_link.get("link")
    peer = get_link(ipr, index=int(peer_index)) if peer_index else None
    if (
        link_kind(container_link) != "veth"
        or peer is None
        or link_kind(peer) != "veth"
        or peer.get("link") != container_link["index"]
    ):
        name = container_link.get("ifname")
        raise HostNetError(f"{name} in {ns.path} is not a veth whose peer is in this namespace")
    return peer


def _create_veth(ipr: IPRoute, ns: Namespace, host: str, ifname: str, mtu: int,
                 mac: str | None = None) -> None:
    if get_link(ipr, host) is not None:
        raise HostNetError(f"host interface {host} already exists")
    peer: dict[str, Any] = {"ifname": ifname, "mtu": mtu, "net_ns_fd": ns.fd}
    if mac is not None:
        peer["address"] = mac
    try:
        ipr.link("add", ifname=host, kind="veth", mtu=mtu, peer=peer)
    except NetlinkError as exc:
        raise HostNetError(f"cannot create veth {host}/{ifname}: {exc.args[-1]}") from exc


def _ensure_container_side(cipr: IPRoute, link: Any) -> None:
    index = int(link["index"])
    lo = get_link(cipr, "lo")
    if lo is not None:
        ensure_link_state(cipr, lo)
    ensure_link_state(cipr, link)  # up before the route: the kernel refuses routes via a down link
    try:
        # Multicast leaves through ethwe, as weave's containers expect (no default route needed).
        cipr.route("add", dst="224.0.0.0", dst_len=4, oif=index, scope=RT_SCOPE_LINK)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def _attachment(host: Any, link: Any, cipr: IPRoute) -> dict[str, Any]:
    return {
        "host_ifname": str(host.get("ifname")),
        "ifname": str(link.get("ifname")),
        "mac": str(link.get("address")),
        "addresses": link_addresses(cipr, int(link["index"])),
    }


def attach(
    netns_path: str,
    cidr: str,
    *,
    bridge: str = BRIDGE,
    mtu: int = DEFAULT_MTU,
    ifname: str = CONTAINER_IFNAME,
    host_ifname: str | None = None,
    mac: str | None = None,
) -> dict[str, Any]:
    """Connect the namespace at `netns_path` to `bridge` with address `cidr` on `ifname`.

    Creates the veth on first use; later calls (another CIDR, or a replay after a netconf
    restart) only ensure it is enslaved and up and add the address. `mtu` and `mac` (the
    container side's; a re-attached container keeps the one it had, so its peers' ARP caches
    stay right) apply when the veth is created. Returns {host_ifname, ifname, mac, addresses}.
    """
    parse_cidr(cidr)
    check_ifname(ifname)
    with entered(netns_path) as ns, rtnl() as ipr:
        bridge_index = require_bridge(ipr, bridge)
        link = get_link(ns.ipr, ifname)
        created: str | None = None
        if link is None:
            created = check_ifname(host_ifname or host_veth_name(ns.inode))
            _create_veth(ipr, ns, created, ifname, mtu, mac)
        try:
            link = get_link(ns.ipr, ifname)
            if link is None:
                raise HostNetError(f"{ifname} vanished from {netns_path} during attach")
            host = _host_side(ipr, ns, link)
            ensure_link_state(ipr, host, master=bridge_index)
            _ensure_container_side(ns.ipr, link)
            add_address(ns.ipr, int(link["index"]), cidr)
            return _attachment(host, get_link(ns.ipr, index=int(link["index"])), ns.ipr)
        except BaseException:
            if created is not None:
                # Deleting the host side takes the container side with it.
                host_msg = get_link(ipr, created)
                if host_msg is not None:
                    delete_link(ipr, int(host_msg["index"]))
            raise


def detach(netns_path: str, cidr: str, *, ifname: str = CONTAINER_IFNAME) -> bool:
    """Remove `cidr` from the container; delete the veth once no address is left.

    Returns whether anything changed.
    """
    parse_cidr(cidr)
    with entered(netns_path) as ns:
        link = get_link(ns.ipr, ifname)
        if link is None:
            return False
        index = int(link["index"])
        changed = remove_address(ns.ipr, index, cidr)
        if not link_addresses(ns.ipr, index):
            changed = delete_link(ns.ipr, index) or changed
        return changed


def container_addresses(netns_path: str, *, ifname: str = CONTAINER_IFNAME) -> list[str]:
    with entered(netns_path) as ns:
        link = get_link(ns.ipr, ifname)
        return [] if link is None else link_addresses(ns.ipr, int(link["index"]))


def container_mac(netns_path: str, *, ifname: str = CONTAINER_IFNAME) -> str | None:
    with entered(netns_path) as ns:
        link = get_link(ns.ipr, ifname)
        return None if link is None else str(link.get("address"))
