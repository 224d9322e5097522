"""The netconf actor: the only process that changes the host's network configuration.

It ensures the `weave` bridge and the router's TAP port at start, forgets conntrack's stale
flows of the router's UDP port, and handles the control requests relayed by the supervisor
(``weavenet.runtime.control``): ``Attach``, ``Detach``, ``Expose``, ``Hide`` and ``Ps``; and
gossip's ``FastdpPeers`` and the forwarder's ``FastdpMacs`` (``weavenet.runtime.fastdp``).
With fastdp (``launch.fastdp`` and no password) it also ensures the VXLAN device on the bridge
(``weavenet.host.vxlan``); a kernel without VXLAN is logged and status says so (every peer
then uses the sleeve). Every operation is an idempotent ensure, so a restarted netconf changes
nothing that is already right; nothing is torn down when it stops (that is `weave reset`'s job).

Attachments are recorded in WEAVE_STATE_DIR/attachments.json (``weavenet.host.attachments``) so
`weave ps` and the in-use check know them; entries whose namespace is gone are dropped, but a
Docker container's while Docker's events are watched (``weavenet.host.dockerwatch``): a
restarted container is re-attached with the addresses and MAC it had, a removed one forgotten.
Sockets: the actor runtime's bus DEALER; the pipe of the Docker events thread.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from weavenet.host import arp, bridge, conntrack, dockerwatch, exposenat, veth, vxlan
from weavenet.host.attachments import FILE_NAME, Attachment, Attachments, ns_inode
from weavenet.host.netns import HostNetError
from weavenet.host.vxlan import NetlinkError  # pyroute2's, imported lean (host.netlink)
from weavenet.runtime.actor import Actor, handles, main
from weavenet.runtime.bus import FAILED, BusError
from weavenet.runtime.control import Attach, Detach, Expose, Hide, Ps, Target
from weavenet.runtime.defaults import BRIDGE
from weavenet.runtime.fastdp import FastdpMacs, FastdpPeers

PRUNE_INTERVAL = 5.0
T = TypeVar("T")


class Netconf(Actor):
    NAME = "netconf"

    def setup(self) -> None:
        self.mtu = self.launch.mtu
        self.range = self.launch.network
        self.attachments = Attachments.load(self.state_dir / FILE_NAME)
        bridge.ensure_bridge(BRIDGE, mtu=self.mtu)
        bridge.ensure_router_port(BRIDGE, mtu=self.mtu)
        self._clear_conntrack(self.launch.port)
        self.fastdp = self._ensure_fastdp()
        self._reconcile_exposed()
        # Docker's event stream: subscribed (True), unreachable (False), not known yet (None)
        self.watching: bool | None = None
        self._docker: Any = None  # a client for inspecting containers, made when needed
        self.docker_events = dockerwatch.DockerEvents()
        self.add_reader(self.docker_events.fd, self._on_docker_events)
        self.docker_events.start()
        self.every(PRUNE_INTERVAL, self._prune)
        self.log.info("bridge_ready", bridge=BRIDGE, mtu=self.mtu,
                      attachments=len(self.attachments))

    def _ensure_fastdp(self) -> str | None:
        """The VXLAN device when fastdp can be used; None, or why not. Never flushed: a
        restarted netconf keeps the entries of running peers (gossip re-sends the set)."""
        if not self.launch.fastdp or self.launch.encryption:
            return None
        try:
            vxlan.ensure_vxlan(vxlan.fastdp_port(self.launch.port), self.mtu, bridge=BRIDGE)
        except (HostNetError, NetlinkError) as exc:
            self.log.warning("fastdp_unavailable", reason=str(exc))
            return f"unavailable: {exc}"
        self.log.info("fastdp_ready", device=vxlan.VXLAN_NAME,
                      port=vxlan.fastdp_port(self.launch.port))
        return "ready"

    def _on_vxlan(self, change: Callable[[], T]) -> T:
        """Run a change of the VXLAN device's entries; a "failed" reply when there is none."""
        if self.fastdp != "ready":
            raise BusError(FAILED, f"fast datapath {self.fastdp or 'disabled'}")
        try:
            return change()
        except (HostNetError, NetlinkError) as exc:
            raise BusError(FAILED, str(exc)) from exc

    @handles(FastdpPeers)
    def fastdp_peers(self, req: FastdpPeers) -> dict[str, Any]:
        change = self._on_vxlan(lambda: vxlan.set_peers(req.ips))
        if change["added"] or change["removed"]:
            self.log.info("fastdp_entries", peers=list(req.ips), **change)
        return change

    @handles(FastdpMacs)
    def fastdp_macs(self, req: FastdpMacs) -> dict[str, Any]:
        moved = self._on_vxlan(lambda: vxlan.move_macs(req.macs))
        if moved:
            self.log.info("fastdp_macs_moved", macs=[m for m, _ in req.macs], moved=moved)
        return {"moved": moved}

    def _reconcile_exposed(self) -> None:
        """Addresses still on the bridge (a relaunch, a restarted netconf) keep their NAT rules;
        after a reboot the bridge is new and has none, so nothing is added."""
        for cidr in bridge.bridge_addresses(BRIDGE):
            try:
                exposenat.ensure(cidr, bridge=BRIDGE)
            except HostNetError as exc:
                self.log.warning("expose_nat_failed", cidr=cidr, reason=str(exc))

    def _clear_conntrack(self, port: int) -> None:
        """Forget conntrack's UDP flows of our port: after a quick relaunch a stale entry (e.g. a
        NAT binding or a firewall verdict) would keep steering sleeve datagrams the old way."""
        try:
            cleared = conntrack.clear_udp_port(port)
        except (NetlinkError, OSError) as exc:
            # not fatal: only a quick relaunch behind NAT or a stateful firewall needs it
            self.log.warning("conntrack_clear_failed", port=port, reason=str(exc))
            return
        self.log.info("conntrack_cleared", port=port, flows=cleared)

    def _prune(self) -> None:
        gone = self.attachments.prune(keep=self._kept)
        for k in gone:
            self.log.info("container_gone", key=k)
        if gone:
            self.attachments.save()

    def _kept(self, a: Attachment) -> bool:
        """A stopped Docker container keeps its addresses while its events are watched, and
        until it is known whether they can be (after a reboot every namespace is gone, and the
        first sync re-attaches the containers Docker restarted)."""
        return self.watching is not False and a.container_id is not None

    # -- Docker's events ---------------------------------------------------------------------
    def _on_docker_events(self) -> None:
        for ev in self.docker_events.read():
            action = ev.get("action")
            if action == "sync":
                if self.watching is not True:
                    self.log.info("docker_events_watched")
                self.watching = True
                for a in self.attachments:
                    if a.container_id is not None:
                        self._heal(a)
            elif action == "lost":
                if self.watching:
                    self.log.warning("docker_events_lost", reason=ev.get("reason"))
                self.watching = False
                self._docker = None
            elif action in dockerwatch.ACTIONS:
                a = self.attachments.get(str(ev.get("id")))
                if a is not None:
                    self._heal(a)

    def _heal(self, a: Attachment) -> None:
        """Re-attach a restarted container, forget a removed one (``dockerwatch.plan``)."""
        assert a.container_id is not None
        try:
            self._docker = self._docker or dockerwatch.connect()
            state = dockerwatch.container_state(self._docker, a.container_id)
        except Exception as exc:  # the SDK raises many kinds; the next sync retries
            self._docker = None
            self.log.warning("docker_inspect_failed", key=a.key, reason=str(exc)[:200])
            return
        step = dockerwatch.plan(a, state, ns_inode)
        if isinstance(step, dockerwatch.Forget):
            self.attachments.remove(a.key)
            self.attachments.save()
            self.log.info("container_forgotten", key=a.key, cidrs=list(a.cidrs))
        elif isinstance(step, dockerwatch.Reattach):
            try:
                info = self._plug(a.key, step.netns, a.cidrs, mac=a.mac)
            except (HostNetError, NetlinkError, OSError) as exc:
                self.log.warning("container_reattach_failed", key=a.key, reason=str(exc))
                return
            rec = dataclasses.replace(
                a, pid=step.pid, netns=step.netns, ino=ns_inode(step.netns),
                mac=info.get("mac", a.mac), host_ifname=info.get("host_ifname"),
                cidrs=tuple(info.get("addresses", a.cidrs)))
            self.attachments.put(rec)
            self.attachments.save()
            self.log.info("container_reattached", key=a.key, cidrs=list(rec.cidrs), mac=rec.mac)

    def _plug(self, key: str, netns: str, cidrs: tuple[str, ...],
              mac: str | None = None) -> dict[str, Any]:
        """The veth and every address, each announced by ARP; the last ``veth.attach`` info."""
        info: dict[str, Any] = {}
        for c in cidrs:
            info = veth.attach(netns, c, bridge=BRIDGE, mtu=self.mtu, mac=mac)
            try:
                arp.announce(netns, info["ifname"], c)
            except OSError as exc:  # an announcement is an optimisation, not a requirement
                self.log.warning("arp_announce_failed", key=key, reason=str(exc))
        return info

    # -- checks ------------------------------------------------------------------------------
    def _check(self, cidrs: tuple[str, ...], key: str | None) -> None:
        self._prune()
        exposed = {ipaddress.ip_interface(c).ip for c in bridge.bridge_addresses(BRIDGE)}
        for text in cidrs:
            iface = ipaddress.ip_interface(text)
            if self.range is not None and not iface.network.subnet_of(self.range):
                raise BusError(FAILED, f"{text} is outside the weave network {self.range}")
            if iface.ip in exposed:
                raise BusError(FAILED, f"{iface.ip} is already in use by this host (weave expose)")
            user = self.attachments.user_of(iface.ip, except_key=key)
            if user is not None:
                raise BusError(FAILED, f"{iface.ip} is already in use by {user.label}")

    # -- handlers ----------------------------------------------------------------------------
    @handles(Attach)
    def attach(self, req: Attach) -> dict[str, Any]:
        target = req.target
        self._check(req.cidrs, target.key if target is not None else None)
        if req.check_only or target is None:
            return {}
        info = self._plug(target.key, target.netns, req.cidrs)
        rec = Attachment(
            key=target.key, label=target.label or target.key,
            container_id=target.container_id, pid=target.pid, netns=target.netns,
            ino=ns_inode(target.netns), mac=info.get("mac"), host_ifname=info.get("host_ifname"),
            cidrs=tuple(info.get("addresses", req.cidrs)),
        )
        self.attachments.put(rec)
        self.attachments.save()
        self.log.info("container_attached", key=rec.key, cidrs=list(req.cidrs), mac=rec.mac)
        return {"mac": rec.mac, "cidrs": list(rec.cidrs)}

    @handles(Detach)
    def detach(self, req: Detach) -> dict[str, Any]:
        target: Target = req.target
        present = set(veth.container_addresses(target.netns))
        missing = [c for c in req.cidrs if c not in present]
        if missing:
            raise BusError(FAILED, f"{target.label or target.key} is not attached to "
                                   f"{', '.join(missing)}")
        for c in req.cidrs:
            veth.detach(target.netns, c)
        left = veth.container_addresses(target.netns)
        rec = self.attachments.get(target.key)
        if left and rec is not None:
            self.attachments.put(dataclasses.replace(rec, cidrs=tuple(left)))
        else:
            self.attachments.remove(target.key)
        self.attachments.save()
        self.log.info("container_detached", key=target.key, cidrs=list(req.cidrs))
        return {"cidrs": left}

    @handles(Expose)
    def expose(self, req: Expose) -> dict[str, Any]:
        if req.cidr not in bridge.bridge_addresses(BRIDGE):
            self._check((req.cidr,), None)
        bridge.expose(req.cidr, bridge=BRIDGE)
        # After the address: the SNAT rule names it. A restarted netconf re-ensures both.
        rules = exposenat.ensure(req.cidr, bridge=BRIDGE)
        self.log.info("host_exposed", cidr=req.cidr, nat_rules_added=rules)
        return {}

    @handles(Hide)
    def hide(self, req: Hide) -> dict[str, Any]:
        # Hiding what is not exposed is a no-op, as a repeated expose is: the end state is the
        # one asked for. Rules go first, so no packet is SNATed to an address already gone.
        rules = exposenat.remove(req.cidr, bridge=BRIDGE)
        was_exposed = bridge.hide(req.cidr, bridge=BRIDGE)
        self.log.info("host_hidden", cidr=req.cidr, was_exposed=was_exposed,
                      nat_rules_removed=rules)
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
            "attachments": self.attachments.summaries(),
            "fastdp": self.fastdp,
        }


if __name__ == "__main__":
    sys.exit(main(Netconf))
