"""The fast datapath's kernel half: one VXLAN device on the weave bridge and its forwarding entries.

Process-free calls for the netconf actor (which runs in the host's namespace); like
``weavenet.host.bridge`` every call is an idempotent ensure on the *current* namespace, opens
its own rtnetlink socket and returns plain values.

The device (``VXLAN_NAME``, VNI ``VNI``, UDP port = weave port + 1, i.e. 6784) is not bound to
an underlay link or address: it sends by the host's routes and accepts VXLAN from anyone on
that port. Which peers frames go to is decided by its forwarding database (FDB):

- **Flood entries** (MAC 00:00:00:00:00:00, dst = a peer's underlay address), one per peer on
  fastdp: broadcast and multicast frames from local containers go to each of those peers once.
  They are the whole of what netconf installs (``set_peers``), and only for peers the overlay
  state machine (``weavenet.mesh.overlay``) has proven.
- **Per-MAC entries** are learned by the kernel (``learning`` on): a frame arriving from peer P
  with source MAC M teaches ``M -> P``, so a reply to M goes to P alone, and a container that
  moved to another host is found again by its first frame from there. Learned entries of a peer
  that leaves fastdp are removed with its flood entry, together with the bridge's own entries
  for those MACs on this port, so no unicast keeps going into a path that stopped working.
- **Moved entries** (``move_macs``): a flow that began while its peer was on the sleeve has its
  MACs learned by the bridge on the TAP, and no frame of it would ever come in by VXLAN to
  change that. The forwarder notices (a unicast frame on the sleeve for a MAC at a fastdp peer)
  and asks netconf to point the MAC at the VXLAN port and the peer's address, as a frame by
  VXLAN would have: from the next frame on, the kernel carries the flow.

The bridge port is set up so that every frame goes either by the kernel or by the sleeve, never
both and never back (``ensure_port_flags``):

- ``isolated`` on this port and on the router's TAP: a frame that came in by VXLAN reaches the
  containers but is never handed to the sleeve (which would send it again), and a frame the
  sleeve injected is never sent out by VXLAN.
- ``unicast_flood`` off on this port: a unicast frame goes by VXLAN only when the bridge has
  learned its destination here (a frame from it came in by VXLAN); an unknown destination goes
  to the TAP, so the sleeve carries it. Broadcasts still reach both, and the sleeve sends them
  only to peers that are not on fastdp (``weavenet.dataplane.fastdp``).

Nothing here is flushed at start: ``ensure_vxlan`` reconciles an existing device in place and
``set_peers`` changes only the entries that differ, so a restarted netconf (or router) leaves
running traffic alone. ``delete`` removes the device and with it every entry (weave stop, reset).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import NTF_MASTER, NTF_SELF

from weavenet.host.bridge import delete_link, get_link, link_kind, require_bridge
from weavenet.host.netns import HostNetError, rtnl
from weavenet.host.tap import ROUTER_PORT
from weavenet.runtime.defaults import BRIDGE, FASTDP_PORT_OFFSET, PORT
from weavenet.runtime.fastdp import VNI, VXLAN_NAME

__all__ = ["VNI", "VXLAN_NAME", "ZERO_MAC", "delete", "ensure_vxlan", "entries", "fastdp_port",
           "move_macs", "present", "set_peers"]
ZERO_MAC = "00:00:00:00:00:00"


class VxlanUnsupported(HostNetError):
    """This kernel cannot create a VXLAN device (no vxlan module)."""


def fastdp_port(weave_port: int = PORT) -> int:
    return weave_port + FASTDP_PORT_OFFSET


def _vxlan_msg(ipr: IPRoute, name: str) -> Any | None:
    msg = get_link(ipr, name)
    if msg is not None and link_kind(msg) != "vxlan":
        raise HostNetError(f"{name} exists but is a {link_kind(msg) or 'plain'} link, not vxlan")
    return msg


def _matches(msg: Any, port: int) -> bool:
    data = ("linkinfo", "data")
    return (msg.get((*data, "vxlan_id")) == VNI and msg.get((*data, "vxlan_port")) == port
            and msg.get((*data, "vxlan_learning")) == 1)


def ensure_vxlan(port: int, mtu: int, bridge: str = BRIDGE, name: str = VXLAN_NAME,
                 router_port: str = ROUTER_PORT) -> int:
    """Create (or reconcile) the VXLAN device on `bridge`, up, with the port flags above.

    A device of ours with another VNI or port (a relaunch with another --port) is replaced; one
    that is right is left alone with its entries. Returns its ifindex.
    """
    with rtnl() as ipr:
        bridge_index = require_bridge(ipr, bridge)
        msg = _vxlan_msg(ipr, name)
        if msg is not None and not _matches(msg, port):
            delete_link(ipr, int(msg["index"]))
            msg = None
        if msg is None:
            try:
                ipr.link("add", ifname=name, kind="vxlan", vxlan_id=VNI, vxlan_port=port,
                         vxlan_learning=1, mtu=mtu)
            except NetlinkError as exc:
                if exc.code in (errno.EOPNOTSUPP, errno.ENOTSUP):
                    raise VxlanUnsupported("kernel without VXLAN") from exc
                if exc.code != errno.EEXIST:
                    raise HostNetError(f"cannot create {name}: {exc.args[-1]}") from exc
            msg = _vxlan_msg(ipr, name)
            if msg is None:
                raise HostNetError(f"{name} vanished right after creation")
        index = int(msg["index"])
        if msg.get("master") != bridge_index:
            ipr.link("set", index=index, master=bridge_index)
        if msg.get("mtu") != mtu:
            ipr.link("set", index=index, mtu=mtu)
        if not msg["flags"] & 1:
            ipr.link("set", index=index, state="up")
        ensure_port_flags(ipr, index, isolated=True, unicast_flood=False)
        tap = get_link(ipr, router_port)
        if tap is not None and tap.get("master") == bridge_index:
            ensure_port_flags(ipr, int(tap["index"]), isolated=True)
        return index


def ensure_port_flags(ipr: IPRoute, index: int, *, isolated: bool,
                      unicast_flood: bool | None = None) -> None:
    wanted: dict[str, int] = {"isolated": int(isolated)}
    if unicast_flood is not None:
        wanted["unicast_flood"] = int(unicast_flood)
    (msg,) = ipr.brport("show", index=index)
    have = msg.get(("protinfo",)) or msg.get("IFLA_PROTINFO")
    current = {k: (have.get(k) if have is not None else None) for k in wanted}
    if current != wanted:
        ipr.brport("set", index=index, **wanted)


def port_flags(name: str) -> dict[str, int | None]:
    """The bridge port flags this module sets, as the kernel reports them (for tests, status)."""
    with rtnl() as ipr:
        msg = get_link(ipr, name)
        if msg is None:
            return {}
        (port,) = ipr.brport("show", index=int(msg["index"]))
        info = port.get("IFLA_PROTINFO")
        if info is None:
            return {}
        return {"isolated": info.get("IFLA_BRPORT_ISOLATED"),
                "unicast_flood": info.get("IFLA_BRPORT_UNICAST_FLOOD"),
                "learning": info.get("IFLA_BRPORT_LEARNING")}


# --- forwarding entries ------------------------------------------------------------------------


def _entries(ipr: IPRoute, index: int) -> list[tuple[str, str | None, int]]:
    """(mac, dst, flags) of every FDB entry on link `index`: the device's own (NTF_SELF, with a
    dst) and the bridge's for this port (NTF_MASTER)."""
    out = []
    for msg in ipr.fdb("dump"):
        if msg.get("ifindex") != index:
            continue
        out.append((str(msg.get("NDA_LLADDR")), msg.get("NDA_DST"), int(msg.get("flags") or 0)))
    return out


def entries(name: str = VXLAN_NAME) -> dict[str, list[str]]:
    """The device's own entries: MAC -> underlay addresses (flood entries under ZERO_MAC)."""
    with rtnl() as ipr:
        msg = _vxlan_msg(ipr, name)
        if msg is None:
            return {}
        out: dict[str, list[str]] = {}
        for mac, dst, flags in _entries(ipr, int(msg["index"])):
            if flags & NTF_SELF and dst is not None:
                out.setdefault(mac, []).append(str(dst))
        return {k: sorted(v) for k, v in out.items()}


def _ignore_missing(call: Any, **kw: Any) -> bool:
    try:
        call(**kw)
    except NetlinkError as exc:
        if exc.code in (errno.ENOENT, errno.ENODEV, errno.EEXIST):
            return False
        raise
    return True


def set_peers(ips: Iterable[str], name: str = VXLAN_NAME) -> dict[str, list[str]]:
    """Make the flood entries exactly one per address in `ips`; for every address dropped,
    also remove what the kernel learned towards it (see the module docstring).

    Returns {"added": [...], "removed": [...]}; an address already right is left untouched.
    """
    wanted = {str(ipaddress.ip_address(ip)) for ip in ips}
    with rtnl() as ipr:
        msg = _vxlan_msg(ipr, name)
        if msg is None:
            raise HostNetError(f"{name} does not exist (fast datapath not set up)")
        index = int(msg["index"])
        current = _entries(ipr, index)
        flooding = {str(dst) for mac, dst, flags in current
                    if flags & NTF_SELF and mac == ZERO_MAC and dst is not None}
        added = sorted(wanted - flooding)
        for ip in added:
            _ignore_missing(ipr.fdb, command="append", ifindex=index, lladdr=ZERO_MAC, dst=ip)
        removed = sorted(flooding - wanted)
        stale = {str(dst) for mac, dst, flags in current
                 if flags & NTF_SELF and dst is not None} - wanted
        for mac, dst, flags in current:
            if not (flags & NTF_SELF) or dst is None or str(dst) not in stale:
                continue
            _ignore_missing(ipr.fdb, command="del", ifindex=index, lladdr=mac, dst=str(dst))
            if mac != ZERO_MAC:  # the bridge must forget this MAC on our port too
                _ignore_missing(ipr.fdb, command="del", ifindex=index, lladdr=mac,
                                flags=NTF_MASTER)
        return {"added": added, "removed": removed}


NUD_REACHABLE = 0x02  # a dynamic entry: it ages out like a learned one


def move_macs(pairs: Iterable[tuple[str, str]], name: str = VXLAN_NAME) -> int:
    """Point each MAC at its peer's address on the device and at this port in the bridge,
    as if a frame from it had just come in by VXLAN; pairs whose address has no flood entry
    (a peer not on fastdp now) are skipped. Returns how many were moved."""
    with rtnl() as ipr:
        msg = _vxlan_msg(ipr, name)
        if msg is None:
            return 0
        index = int(msg["index"])
        flooding = {str(dst) for mac, dst, flags in _entries(ipr, index)
                    if flags & NTF_SELF and mac == ZERO_MAC and dst is not None}
        moved = 0
        for mac, ip in pairs:
            if ip not in flooding:
                continue
            ipr.fdb("replace", ifindex=index, lladdr=mac, dst=ip, flags=NTF_SELF,
                    state=NUD_REACHABLE)
            ipr.fdb("replace", ifindex=index, lladdr=mac, flags=NTF_MASTER, state=NUD_REACHABLE)
            moved += 1
        return moved


def delete(name: str = VXLAN_NAME) -> bool:
    """Remove the device and every entry with it; False when there was none."""
    with rtnl() as ipr:
        msg = get_link(ipr, name)
        if msg is None or link_kind(msg) != "vxlan":
            return False
        return delete_link(ipr, int(msg["index"]))


def present(name: str = VXLAN_NAME) -> bool:
    with rtnl() as ipr:
        return _vxlan_msg(ipr, name) is not None


# --- the container MTU fastdp can carry --------------------------------------------------------

OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
_NOT_UNDERLAY = ("bridge", "veth", "tun", "vxlan", "dummy")


def underlay_mtu(default: int = 1500) -> int:
    """The MTU of this host's underlay: the default route's link, or else the largest up link
    that is not ours or a container's (a lab host routes only its LAN); ``default`` if none."""
    with rtnl() as ipr:
        for route in ipr.route("get", dst="8.8.8.8") if _has_default(ipr) else ():
            oif = route.get("RTA_OIF")
            msg = get_link(ipr, index=oif) if oif else None
            mtu = msg.get("mtu") if msg is not None else None
            if mtu:
                return int(mtu)
        best = 0
        for msg in ipr.link("dump"):
            name = str(msg.get("ifname"))
            if name == "lo" or link_kind(msg) in _NOT_UNDERLAY or not msg["flags"] & 1:
                continue
            best = max(best, int(msg.get("mtu") or 0))
        return best or default


def _has_default(ipr: IPRoute) -> bool:
    return any(r.get("dst_len") == 0 for r in ipr.route("dump", family=2, table=254))


def fastdp_mtu() -> int:
    """The default container MTU with fastdp: the largest frame VXLAN carries on the underlay."""
    return underlay_mtu() - OVERHEAD
