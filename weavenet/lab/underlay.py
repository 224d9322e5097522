"""The lab's underlay: network namespaces, the LAN bridge, and reversible faults.

Every host namespace gets a veth `eth0` whose other end is a port of bridge `br0` in a shared
LAN namespace. The veth pair is created from inside the LAN namespace with its peer placed
directly in the host namespace, so no link ever exists in the root namespace, not even briefly.

A host may sit behind NAT (``build_nat``): then its ``eth0`` leads to a router namespace of its
own, whose ``eth0`` is the LAN port and which masquerades what the host sends.

Faults are iptables rules in the *host* namespaces (INPUT only): rules on the LAN bridge would
need br_netfilter, a module-wide switch that would affect every bridge on the machine. Dropping
at INPUT on the receiving side makes a cut a silent black hole, as a real partition is, rather
than an immediate EPERM on send, which an OUTPUT rule would give. iptables here is the
nf_tables flavour (iptables-nft); it works per namespace like the legacy one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import NetlinkError, NetNS, netns

from weavenet.lab.errors import LabError

NETNS_DIR = Path("/var/run/netns")
BRIDGE = "br0"
UNDERLAY_IF = "eth0"
NAT_INSIDE_IF = "in0"  # the NAT router's side of the link to the host behind it
RULE_TAG = "weave-lab"  # iptables comment marking rules the lab owns


def ns_file(name: str) -> Path:
    return NETNS_DIR / name


def nsenter(name: str, argv: list[str]) -> list[str]:
    # nsenter (not `ip netns exec`): it leaves the mount namespace alone, so /sys and the cgroup
    # mounts stay what dockerd expects. It execs the command, so the PID is the command's own.
    return ["nsenter", f"--net={ns_file(name)}", *argv]


def exists(name: str) -> bool:
    return ns_file(name).exists()


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    if exists(name):
        raise LabError(f"network namespace {name} already exists")
    netns.create(name)
    with NetNS(name) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")


def remove(name: str) -> None:
    """Remove a namespace; links inside it (veth ends, the bridge) go with it."""
    if not exists(name):
        return
    try:
        netns.remove(name)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise LabError(f"cannot remove network namespace {name}: {e}") from e


@dataclass(frozen=True)
class Port:
    """One host's attachment to the LAN: its namespace, LAN-side veth name, underlay address."""

    host_ns: str
    lan_ifname: str
    address: str
    prefixlen: int


def build_lan(lan_ns: str) -> None:
    with NetNS(lan_ns) as lan:
        lan.link("add", ifname=BRIDGE, kind="bridge")
        lan.link("set", index=lan.link_lookup(ifname=BRIDGE)[0], state="up")


def attach(lan_ns: str, port: Port) -> None:
    with NetNS(lan_ns) as lan:
        try:
            lan.link(
                "add",
                ifname=port.lan_ifname,
                kind="veth",
                peer={"ifname": UNDERLAY_IF, "net_ns_fd": port.host_ns},
            )
        except NetlinkError as e:
            raise LabError(f"cannot create veth for {port.host_ns}: {e}") from e
        idx = lan.link_lookup(ifname=port.lan_ifname)[0]
        lan.link("set", index=idx, master=lan.link_lookup(ifname=BRIDGE)[0], state="up")
    with NetNS(port.host_ns) as host:
        idx = host.link_lookup(ifname=UNDERLAY_IF)[0]
        host.addr("add", index=idx, address=port.address, prefixlen=port.prefixlen)
        host.link("set", index=idx, state="up")


def build_nat(router_ns: str, host_ns: str, inside: str, lan_net: str) -> None:
    """Put host_ns behind router_ns, a masquerading NAT router (its LAN side already attached).

    ``inside`` is the private /24 between them (router .1, host .2). The host routes only the
    LAN (``lan_net``) through the router, so nothing can leave the lab. Inbound connections to
    the router's LAN address are not forwarded: the host can dial out, nobody can dial in,
    as behind a home router.
    """
    net = inside.rsplit(".", 1)[0]
    with NetNS(router_ns) as router:
        try:
            router.link("add", ifname=NAT_INSIDE_IF, kind="veth",
                        peer={"ifname": UNDERLAY_IF, "net_ns_fd": host_ns})
        except NetlinkError as e:
            raise LabError(f"cannot create the NAT veth for {host_ns}: {e}") from e
        idx = router.link_lookup(ifname=NAT_INSIDE_IF)[0]
        router.addr("add", index=idx, address=f"{net}.1", prefixlen=24)
        router.link("set", index=idx, state="up")
    with NetNS(host_ns) as host:
        idx = host.link_lookup(ifname=UNDERLAY_IF)[0]
        host.addr("add", index=idx, address=f"{net}.2", prefixlen=24)
        host.link("set", index=idx, state="up")
        dst, dst_len = lan_net.split("/")
        host.route("add", dst=dst, dst_len=int(dst_len), gateway=f"{net}.1")
    # Forwarding is a per-namespace sysctl: this changes the router namespace only.
    for argv in (["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                 ["iptables", "-w", "5", "-t", "nat", "-A", "POSTROUTING", "-o", UNDERLAY_IF,
                  "-m", "comment", "--comment", RULE_TAG, "-j", "MASQUERADE"]):
        done = subprocess.run(nsenter(router_ns, argv), capture_output=True, text=True,
                              timeout=30)
        if done.returncode != 0:
            raise LabError(f"{argv[0]} in {router_ns} failed: {done.stderr.strip()}")


def links(name: str) -> list[str]:
    with NetNS(name) as ns:
        return sorted(link.get("ifname") for link in ns.get_links())


# --- faults -----------------------------------------------------------------------------------


def _iptables(ns: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nsenter(ns, ["iptables", "-w", "5", *args]),
        capture_output=True,
        text=True,
        timeout=30,
    )


def _spec(rule: list[str]) -> list[str]:
    return [*rule, "-m", "comment", "--comment", RULE_TAG, "-j", "DROP"]


def add_drop(ns: str, rule: list[str], chain: str = "INPUT") -> None:
    """Insert a DROP rule at the top of chain unless it is already there (idempotent)."""
    spec = _spec(rule)
    if _iptables(ns, ["-C", chain, *spec]).returncode == 0:
        return
    done = _iptables(ns, ["-I", chain, *spec])
    if done.returncode != 0:
        raise LabError(f"iptables in {ns} failed: {done.stderr.strip()}")


def remove_drop(ns: str, rule: list[str], chain: str = "INPUT") -> None:
    """Delete every copy of a DROP rule; absent rules and absent namespaces are fine."""
    if not exists(ns):
        return
    spec = _spec(rule)
    with contextlib.suppress(subprocess.TimeoutExpired):
        for _ in range(16):  # bounded: a rule is inserted at most once per add_drop
            if _iptables(ns, ["-D", chain, *spec]).returncode != 0:
                return


def loss_rule(percent: float) -> list[str]:
    """Match a random share of the packets arriving from the LAN (the `statistic` match: each
    packet independently, like a lossy link; nftables' `numgen random` would be the same)."""
    return ["-i", UNDERLAY_IF, "-m", "statistic", "--mode", "random",
            "--probability", f"{percent / 100:.4f}"]


def tcp_or_udp(proto: str) -> str:
    proto = proto.lower()
    if proto not in ("tcp", "udp"):
        raise LabError(f"protocol must be tcp or udp, not {proto!r}")
    return proto
