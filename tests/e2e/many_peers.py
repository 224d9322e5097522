"""A stand-in router for the page at 50 peers: serves a made-up status of N peers with the real
HTTP server on 127.0.0.1:6782, until its standard input closes.

Run inside a lab host's namespace (``python tests/e2e/many_peers.py N``); prints ``ready``.
Peer i is connected to i±1 and i±7 (a ring with chords), and we (peer 0) to up to ten more.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.unit.status_helper import actor, link
from weavenet.web.server import StatusServer


def name(i: int) -> str:
    return ":".join(f"{b:02x}" for b in (0x0a, 0x42, 0, 0, i // 256, i % 256))


def many_peers_status(n: int) -> dict[str, Any]:
    neighbours = {i: sorted({(i + d) % n for d in (1, -1, 7, -7)} - {i}) for i in range(n)}
    neighbours[0] = sorted(set(neighbours[0]) | set(range(1, min(11, n))))
    for j in neighbours[0]:
        if 0 not in neighbours[j]:
            neighbours[j].append(0)
    peers = [{"name": name(i), "nickname": f"host{i + 1}", "uid": i, "connections":
              len(neighbours[i]), "links": [link(name(j), f"198.18.0.{j + 1}:6783", j < i)
                                            for j in neighbours[i]]} for i in range(n)]
    conns = [{"address": f"198.18.0.{j + 1}:6783", "peer": name(j), "nickname": f"host{j + 1}",
              "state": "established" if j % 5 else "connected", "info": "outbound",
              "encrypted": False, "direction": "outbound"} for j in neighbours[0]]
    gossip = {"peer": {"name": name(0), "nickname": "host1", "uid": 0}, "peers": peers,
              "connections": conns, "routes": {name(i): name(1) for i in range(1, n)}}
    forwarder = {"macs": 3 * n, "counters": {}, "paths": {
        name(j): {"state": "ok", "pmtu": 1472, "frag_ok": True, "tx_frames": 0}
        for j in neighbours[0]}}
    return {"version": "0.1.0", "pid": 1, "uptime": 1.0, "range": "10.0.0.0/16",
            "encryption": False, "peer": {"name": name(0), "nickname": "host1"},
            "actors": [actor("forwarder", forwarder), actor("gossip", gossip)]}


def main() -> int:
    status = many_peers_status(int(sys.argv[1]))
    server = StatusServer(("127.0.0.1", 6782), lambda: status).start()
    print("ready", flush=True)
    sys.stdin.read()
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
