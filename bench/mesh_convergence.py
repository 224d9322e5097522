"""Gossip convergence of simulated meshes: rounds, messages and records per change.

    python bench/mesh_convergence.py [--sizes 10,100,500] [--degree 3] [--seed 2014]

In-process (``weavenet.mesh.simulation``): N peers, each connecting to `degree` random earlier
ones, gossip through the real Peers/Routes code over an in-memory transport in synchronous rounds
(one round = one network latency). For each size it measures a cold start, a peer joining, a peer
leaving, a partition into two halves, the partition healing, and a peer restarting as a new
incarnation, checking after each that every peer's view is correct. "msgs/NlogN" shows the
message count per change against N*log2(N); it should stay flat or fall as N grows, where N^2
growth would show up as a factor of ~N/log N. Wall time includes route calculation at one
peer (`route ms`).

Prints a table and writes bench/results/mesh_convergence.json.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path
from typing import Any

from weavenet.mesh.peer import PeerName
from weavenet.mesh.routes import Routes
from weavenet.mesh.simulation import MeshSim

RESULTS = Path(__file__).resolve().parent / "results"


def measure(sim: MeshSim, n: int, event: str, change: Any) -> dict[str, Any]:
    start = time.perf_counter()
    change()
    stats = sim.run_until_quiet()
    elapsed = time.perf_counter() - start
    # The full route check is O(N^2) BFS; the topology check already proves every view correct.
    sim.assert_converged(routes=n <= 100)
    links = sum(len(node.neighbours) for node in sim.nodes.values()) // 2
    return {
        "peers": n,
        "event": event,
        "rounds": stats.rounds,
        "messages": stats.messages,
        "records": stats.records,
        "bytes": stats.bytes,
        "links": links,
        "wall_s": round(elapsed, 3),
        "msgs_per_nlogn": round(stats.messages / (n * math.log2(n)), 3),
    }


def run_size(n: int, degree: int, seed: int) -> list[dict[str, Any]]:
    sim = MeshSim(random.Random(seed))
    rng = random.Random(seed + 1)
    names: list[PeerName] = []
    rows = [measure(sim, n, "cold start", lambda: names.extend(sim.build(n, degree)))]

    def join() -> None:
        new = sim.add_peer("joiner")
        for other in rng.sample(names, min(degree, len(names))):
            sim.connect(new, other)

    rows.append(measure(sim, n, "join", join))
    rows.append(measure(sim, n, "leave", lambda: sim.remove_peer(names[n // 3])))
    rows.append(measure(sim, n, "partition", lambda: sim.partition(sim.connected_half(names[0]))))
    rows.append(measure(sim, n, "heal", sim.heal))
    rows.append(measure(sim, n, "restart", lambda: sim.restart_peer(names[n // 2])))

    start = time.perf_counter()
    Routes.calculate(sim.nodes[names[0]].peers)
    route_ms = round((time.perf_counter() - start) * 1000, 1)
    for row in rows:
        row["route_ms"] = route_ms
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--degree", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2014)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for n in sizes:
        rows += run_size(n, args.degree, args.seed)
    total = time.perf_counter() - started

    cols = ["peers", "event", "rounds", "messages", "records", "links", "msgs_per_nlogn"]
    cols += ["wall_s", "route_ms"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).rjust(w) for c, w in zip(cols, widths, strict=True)))
    print(f"total {total:.1f} s")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "mesh_convergence.json"
    meta = {"degree": args.degree, "seed": args.seed, "python": platform.python_version()}
    out.write_text(json.dumps({"meta": meta, "total_s": round(total, 2), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
