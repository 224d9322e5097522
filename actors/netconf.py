"""The netconf actor: the only process that changes the host's network configuration.

It ensures the `weave` bridge and the router's TAP port at start, and handles the control
requests relayed by the supervisor (``weavenet.runtime.control``): ``Attach``, ``Detach``,
``Expose``, ``Hide`` and ``Ps``. Every operation is an
idempotent ensure, so a restarted netconf changes nothing that is already right; nothing is
torn down when it stops (that is `weave reset`'s job).

Attachments are recorded in WEAVE_STATE_DIR/attachments.json so `weave ps` and the in-use
check know them; entries whose namespace is gone (the container exited) are dropped.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from typing import Any

from weavenet.host import arp, bridge, veth
from weavenet.runtime.actor import Actor, handles, main
from weavenet.runtime.bus import FAILED, BusError
from weavenet.runtime.control import Attach, Detach, Expose, Hide, Ps
from weavenet.runtime.defaults import BRIDGE


class Netconf(Actor):
    NAME = "netconf"

    def setup(self) -> None:
        self.mtu = self.launch.mtu
        self.range = self.launch.network
        self.db_path = self.state_dir / "attachments.json"
        self.attachments: dict[str, dict[str, Any]] = self._load()
        bridge.ensure_bridge(BRIDGE, mtu=self.mtu)
        bridge.ensure_router_port(BRIDGE, mtu=self.mtu)
        self._clear_conntrack(self.launch.port)
        self.every(5.0, self._prune)
        self.log.info("bridge_ready", bridge=BRIDGE, mtu=self.mtu,
                      attachments=len(self.attachments))

    def _clear_conntrack(self, port: int) -> None:
        """Forget conntrack's UDP 6783 flows: after a quick relaunch a stale entry (e.g. a NAT
        binding or a firewall verdict) would keep steering sleeve datagrams the old way."""
        exe = shutil.which("conntrack")
        if exe is None:
            self.log.warning("conntrack_missing",
                             hint="install conntrack so a quick relaunch re-establishes fully")
            return
        for flag in ("--dport", "--sport"):
            subprocess.run([exe, "-D", "-p", "udp", flag, str(port)], capture_output=True,
                           timeout=10)

    # -- the attachment record -------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.db_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        tmp = self.db_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.attachments, indent=1))
        os.replace(tmp, self.db_path)

    def _prune(self) -> None:
        gone = [k for k, a in self.attachments.items() if not os.path.exists(a["netns"])
                or not _same_ns(a)]
        for k in gone:
            self.log.info("container_gone", key=k)
            del self.attachments[k]
        if gone:
            self._save()

    # -- checks ------------------------------------------------------------------------------
    def _check(self, cidrs: tuple[str, ...], key: str | None) -> list[ipaddress.IPv4Interface]:
        self._prune()
        out = []
        exposed = {ipaddress.ip_interface(c).ip for c in bridge.bridge_addresses(BRIDGE)}
        for text in cidrs:
            iface = ipaddress.ip_interface(text)
            if self.range is not None and not iface.network.subnet_of(self.range):
                raise BusError(FAILED, f"{text} is outside the weave network {self.range}")
            if iface.ip in exposed:
                raise BusError(FAILED, f"{iface.ip} is already in use by this host (weave expose)")
            for k, a in self.attachments.items():
                if k != key and any(ipaddress.ip_interface(c).ip == iface.ip for c in a["cidrs"]):
                    raise BusError(FAILED, f"{iface.ip} is already in use by {a['label']}")
            out.append(iface)
        return out

    # -- handlers ----------------------------------------------------------------------------
    @handles(Attach)
    def attach(self, req: Attach) -> dict[str, Any]:
        target = req.target
        cidrs = req.cidrs
        self._check(cidrs, target.key if target is not None else None)
        if req.check_only or target is None:
            return {}
        key, netns = target.key, target.netns
        info: dict[str, Any] = {}
        for c in cidrs:
            info = veth.attach(netns, c, bridge=BRIDGE, mtu=self.mtu)
            try:
                arp.announce(netns, info["ifname"], c)
            except OSError as exc:  # an announcement is an optimisation, not a requirement
                self.log.warning("arp_announce_failed", key=key, reason=str(exc))
        rec = {
            "key": key, "label": target.label or key,
            "container_id": target.container_id, "pid": target.pid,
            "netns": netns, "ino": _ns_inode(netns), "mac": info.get("mac"),
            "host_ifname": info.get("host_ifname"),
            "cidrs": list(info.get("addresses", cidrs)),
        }
        self.attachments[key] = rec
        self._save()
        self.log.info("container_attached", key=key, cidrs=list(cidrs), mac=rec["mac"])
        return {"mac": rec["mac"], "cidrs": rec["cidrs"]}

    @handles(Detach)
    def detach(self, req: Detach) -> dict[str, Any]:
        target = req.target
        key, netns = target.key, target.netns
        present = set(veth.container_addresses(netns))
        missing = [c for c in req.cidrs if c not in present]
        if missing:
            raise BusError(FAILED, f"{target.label or key} is not attached to "
                                   f"{', '.join(missing)}")
        for c in req.cidrs:
            veth.detach(netns, c)
        left = veth.container_addresses(netns)
        if left and key in self.attachments:
            self.attachments[key]["cidrs"] = left
        else:
            self.attachments.pop(key, None)
        self._save()
        self.log.info("container_detached", key=key, cidrs=list(req.cidrs))
        return {"cidrs": left}

    @handles(Expose)
    def expose(self, req: Expose) -> dict[str, Any]:
        if req.cidr not in bridge.bridge_addresses(BRIDGE):
            self._check((req.cidr,), None)
        bridge.expose(req.cidr, bridge=BRIDGE)
        self.log.info("host_exposed", cidr=req.cidr)
        return {}

    @handles(Hide)
    def hide(self, req: Hide) -> dict[str, Any]:
        if req.cidr not in bridge.bridge_addresses(BRIDGE):
            raise BusError(FAILED, f"{req.cidr} is not exposed on this host")
        bridge.hide(req.cidr, bridge=BRIDGE)
        self.log.info("host_hidden", cidr=req.cidr)
        return {}

    @handles(Ps)
    def ps(self, req: Ps) -> dict[str, Any]:
        self._prune()
        return self.status()

    def status(self) -> dict[str, Any]:
        with bridge.rtnl() as ipr:
            link = bridge.get_link(ipr, BRIDGE)
        return {
            "bridge": BRIDGE,
            "bridge_mac": bridge.link_summary(link)["mac"] if link is not None else None,
            "mtu": self.mtu,
            "exposed": bridge.bridge_addresses(BRIDGE),
            "attachments": [
                {k: a[k] for k in ("key", "label", "container_id", "mac", "cidrs")}
                for a in self.attachments.values()
            ],
        }


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _same_ns(rec: dict[str, Any]) -> bool:
    """A pid can be reused; the namespace inode tells whether it is still the same container."""
    ino = rec.get("ino")
    return ino is None or _ns_inode(rec["netns"]) == ino


if __name__ == "__main__":
    sys.exit(main(Netconf))
