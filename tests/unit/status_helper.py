"""A router's status answer as the supervisor gives it, for the report, views and metrics tests.

Shaped like a real one (taken from a three-host lab, then cut down): host1 is us, connected to
host2 (established), to host3 (TCP up, UDP path down) and failing to dial 198.18.0.9.
"""

from __future__ import annotations

from typing import Any

US, H2, H3 = "f2:10:62:06:de:00", "16:0a:5c:b6:56:ff", "9e:0f:77:31:7c:eb"
DOWN = "UDP path down: heartbeats not answered (UDP port blocked or link cut?)"


def link(peer: str, address: str, outbound: bool) -> dict[str, Any]:
    return {"peer": peer, "address": address, "outbound": outbound, "established": True}


def actor(name: str, status: dict[str, Any], state: str = "running",
          restarts: int = 0) -> dict[str, Any]:
    return {"name": name, "state": state, "pid": 100, "uptime": 9.0, "restarts": restarts,
            "last_exit": "killed by signal 9" if restarts else "", "status": status}


def sample_status() -> dict[str, Any]:
    gossip = {
        "peer": {"name": US, "nickname": "host1", "uid": 7},
        "peers": [
            {"name": H2, "nickname": "host2", "uid": 8, "connections": 2,
             "links": [link(H3, "198.18.0.3:54666", False), link(US, "198.18.0.1:6783", True)]},
            {"name": H3, "nickname": "host3", "uid": 9, "connections": 2,
             "links": [link(H2, "198.18.0.2:6783", True), link(US, "198.18.0.1:6783", True)]},
            {"name": US, "nickname": "host1", "uid": 7, "connections": 2,
             "links": [link(H2, "198.18.0.2:39596", False), link(H3, "198.18.0.3:46904", False)]},
        ],
        "connections": [
            {"address": "198.18.0.2:39596", "peer": H2, "nickname": "host2",
             "state": "established", "info": "inbound", "encrypted": True,
             "direction": "inbound"},
            {"address": "198.18.0.3:46904", "peer": H3, "nickname": "host3",
             "state": "connected", "info": "inbound; " + DOWN, "encrypted": True,
             "direction": "inbound", "reason": DOWN},
            {"address": "198.18.0.9:6783", "peer": None, "nickname": None, "state": "retrying",
             "info": "connect timed out", "direction": "outbound",
             "reason": "connect timed out"},
        ],
        "routes": {H2: H2, H3: H2},
        "refused_records": 0, "suppressed_refusals": 0,
        "messages": {"rx": {"Heartbeat": 5, "TopologyUpdate": 15},
                     "tx": {"Heartbeat": 7, "TopologyUpdate": 14, "Goodbye": 1}},
        "terminations": {"silence": 1, "dial_failed": 3},
    }
    forwarder = {
        "macs": 6,
        "counters": {"rx": 18, "rx_bytes": 126714, "rx_datagrams": 68, "tx": 10,
                     "tx_bytes": 1188, "tx_datagrams": 8, "injected": 18,
                     "injected_bytes": 1636, "dropped": 3,
                     "drops": {"no_peers": 3}},
        "paths": {H2: {"state": "ok", "pmtu": 1472, "frag_ok": True,
                       "addr": "198.18.0.2:6783", "tx_frames": 8},
                  H3: {"state": "unreachable", "pmtu": 1400, "frag_ok": False,
                       "addr": "198.18.0.3:6783", "tx_frames": 2}},
    }
    capture = {"counters": {"rx": 13, "rx_bytes": 1212, "dropped": 2,
                            "drops": {"queue_full": 2}},
               "tap": "vethwe-tap", "offloads": True}
    netconf = {"bridge": "weave", "bridge_mac": "aa:bb:cc:dd:ee:ff", "mtu": 1394,
               "exposed": ["10.0.1.102/24"],
               "attachments": [{"key": "c1", "label": "c1", "container_id": "c1" * 32,
                                "mac": "02:00:00:00:00:01", "cidrs": ["10.0.1.1/24"]}]}
    return {
        "version": "0.1.0", "pid": 42, "uptime": 9.7, "range": "10.0.0.0/16", "ip": "10.0.0.1",
        "port": 6783, "encryption": True, "peer": {"name": US, "nickname": "host1"},
        "actors": [actor("netconf", netconf), actor("capture", capture),
                   actor("crypto", {"peers": 2, "counters": {"sealed": 4}}),
                   actor("forwarder", forwarder, restarts=1), actor("gossip", gossip)],
    }
