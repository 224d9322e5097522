"""The request that programs the fast datapath's kernel entries, and its environment switch.

:class:`FastdpPeers` (``fastdp.peers``): gossip, through the supervisor's actor relay, tells
netconf the *whole* set of underlay addresses whose peers are on fastdp; netconf makes the VXLAN
device's flood entries exactly that set (``weavenet.host.vxlan.set_peers``), removing what was
learned towards an address that left it. Sending the whole set (on change, and as a backstop
every few seconds) makes the request idempotent and lets a restarted netconf or gossip converge
without flushing anything. Reply ``{"added": [...], "removed": [...]}``; a "failed" error when the
device does not exist.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from weavenet.runtime.request import Request, UsageError, texts

NETCONF = "netconf"
VXLAN_NAME = "vxlan-6784"  # upstream Weave's name for its fast datapath device
VNI = 0x574E  # "WN": any fixed id; both ends must agree, and the heartbeat uses it too
HEARTBEAT_ETHERTYPE = 0x88B5  # IEEE local experimental: the heartbeat frames (mesh.fdpwire)
MAX_PEERS = 1024
ENV_NO_FASTDP = "WEAVE_NO_FASTDP"


@dataclass(frozen=True)
class FastdpPeers(Request):
    TYPE = "fastdp.peers"
    HANDLER = NETCONF

    ips: tuple[str, ...]

    def to_body(self) -> dict[str, Any]:
        return {"ips": list(self.ips)}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        ips = texts(body, "ips", MAX_PEERS, 64)
        for ip in ips:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise UsageError(f"{ip!r} is not an IPv4 address") from None
        return cls(tuple(sorted(set(ips))))


MAX_MACS = 256


@dataclass(frozen=True)
class FastdpMacs(Request):
    """Move MACs that live at fastdp peers to the VXLAN port (``weavenet.host.vxlan.move_macs``).

    Sent by the forwarder when the sleeve carries a unicast frame to a MAC whose peer is on
    fastdp: the bridge learned that MAC on the TAP while the peer was on the sleeve, and would
    keep sending its frames there. Body ``{"macs": [[mac, ip], ...]}``; reply ``{"moved": n}``.
    A pair whose address has no flood entry (no longer fastdp) is ignored.
    """

    TYPE = "fastdp.macs"
    HANDLER = NETCONF

    macs: tuple[tuple[str, str], ...]

    def to_body(self) -> dict[str, Any]:
        return {"macs": [list(p) for p in self.macs]}

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        raw = body.get("macs")
        if not isinstance(raw, list | tuple) or len(raw) > MAX_MACS:
            raise UsageError(f"macs must be a list of at most {MAX_MACS} [mac, ip] pairs")
        out = []
        for pair in raw:
            if (not isinstance(pair, list | tuple) or len(pair) != 2
                    or not all(isinstance(x, str) for x in pair)):
                raise UsageError("macs must hold [mac, ip] pairs of strings")
            mac, ip = pair
            parts = mac.split(":")
            if len(parts) != 6 or not all(len(x) == 2 for x in parts):
                raise UsageError(f"{mac[:40]!r} is not a MAC address")
            try:
                int(mac.replace(":", ""), 16)
                ipaddress.IPv4Address(ip)
            except ValueError:
                raise UsageError(f"bad pair {mac[:40]!r} {ip[:40]!r}") from None
            out.append((mac.lower(), ip))
        return cls(tuple(out))


def env_disables(environ: Mapping[str, str]) -> bool:
    """``WEAVE_NO_FASTDP=1`` (any value but "", "0", "false", "no") forces the sleeve."""
    return environ.get(ENV_NO_FASTDP, "").strip().lower() not in ("", "0", "false", "no")
