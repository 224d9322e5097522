"""The NAT that makes an exposed host a gateway between its networks and an application network.

`weave expose 10.0.1.102/24` puts the address on the bridge; the seed's service export and
import then add only a DNAT rule. For the replies to find their way back, the exposed host
also rewrites source addresses, as the original `weave expose` did:

* into the network (export): a connection from outside 10.0.1.0/24 that this host forwards to a
  container leaves with the host's weave address, 10.0.1.102, as its source, so the container
  answers inside its own subnet whatever its routes are;
* out of the network (import): a connection from the subnet that this host forwards out of any
  other interface is masqueraded to that interface's address, so the far service answers us.

No filter rule is added: with br_netfilter (which Docker loads) frames bridged between
containers pass the FORWARD chain too, and a rule meant for routed packets would cut them. IPv4
forwarding is switched on in the host's namespace, as it must
be for any of this to pass (Docker usually has done so already); hide and reset leave it on,
since other software may rely on it.

Rules are iptables rules (nf_tables or legacy, whichever `iptables` is), tagged with a comment
``weave-expose:<cidr>`` so that hide removes exactly its own and reset every one.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

from weavenet.host.netns import HostNetError
from weavenet.runtime.defaults import BRIDGE

TAG = "weave-expose"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")  # per network namespace


def rules(cidr: str, bridge: str = BRIDGE) -> list[tuple[str, str, list[str]]]:
    """(table, chain, match and target) of the rules one exposed address needs."""
    iface = ipaddress.IPv4Interface(cidr)
    net, me = str(iface.network), str(iface.ip)
    tag = ["-m", "comment", "--comment", f"{TAG}:{iface}"]
    return [
        ("nat", "POSTROUTING",
         ["-o", bridge, "!", "-s", net, "-d", net, *tag, "-j", "SNAT", "--to-source", me]),
        ("nat", "POSTROUTING", ["!", "-o", bridge, "-s", net, "!", "-d", net, *tag,
                                "-j", "MASQUERADE"]),
    ]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("iptables") is None:
        raise HostNetError("iptables is not installed: weave expose needs it for its NAT rules")
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True,
                          timeout=30)


def ensure(cidr: str, bridge: str = BRIDGE) -> int:
    """Add the rules for an exposed address unless present (idempotent); how many were added."""
    enable_forwarding()
    added = 0
    for table, chain, spec in rules(cidr, bridge):
        if _iptables("-t", table, "-C", chain, *spec).returncode == 0:
            continue
        # Insert, not append: ahead of any DROP a distribution's firewall may end its chain on.
        done = _iptables("-t", table, "-I", chain, *spec)
        if done.returncode != 0:
            raise HostNetError(f"iptables: {done.stderr.strip() or done.returncode}")
        added += 1
    return added


def remove(cidr: str, bridge: str = BRIDGE) -> int:
    """Delete every copy of the rules for an exposed address; how many were deleted."""
    removed = 0
    for table, chain, spec in rules(cidr, bridge):
        for _ in range(8):  # bounded: ensure() inserts each rule at most once
            if _iptables("-t", table, "-D", chain, *spec).returncode != 0:
                break
            removed += 1
    return removed


def remove_all() -> int:
    """Delete every rule this module ever added, whatever address it was for (weave reset)."""
    if shutil.which("iptables") is None:
        return 0
    removed = 0
    for table in ("nat",):
        listing = _iptables("-t", table, "-S")
        for line in listing.stdout.splitlines():
            if f'"{TAG}:' not in line and f" {TAG}:" not in line:
                continue
            args = line.split()
            if args[:1] != ["-A"]:
                continue
            # `-S` prints the rule as it was added, comment quoted: hand it back unquoted.
            spec = [a.strip('"') for a in args[1:]]
            if _iptables("-t", table, "-D", *spec).returncode == 0:
                removed += 1
    return removed


FORWARDING_ERROR = "cannot enable IPv4 forwarding"  # the CLI recognises it (a container's
# /proc/sys is read-only: the CLI on the host does it then)


def enable_forwarding() -> bool:
    """Turn IPv4 forwarding on in this namespace; True when it was off."""
    try:
        if IP_FORWARD.read_text().strip() == "1":
            return False
        IP_FORWARD.write_text("1\n")
    except OSError as exc:
        raise HostNetError(f"{FORWARDING_ERROR}: {exc.strerror or exc}") from None
    return True
