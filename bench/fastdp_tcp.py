"""Fast datapath TCP against the raw kernel VXLAN path, in interleaved rounds.

One iperf3 stream varies by ±20 % from run to run on this machine, more than the difference
this benchmark looks for (issue 10: fastdp TCP ≥ 0.9 × raw VXLAN). So both paths are set up at
once on the same two lab hosts (the hand-built VXLAN on UDP 4789, weavenet's on 6784) and
measured alternately, native, raw, fastdp, for ``--rounds`` rounds; the table gives each round
and the medians, with fastdp's ratio to raw per round and of the medians. Run as root:

    .venv/bin/python bench/fastdp_tcp.py [--seconds 10] [--rounds 5]

Writes bench/results/fastdp_tcp.json. Every load is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ping_ms, raw_vxlan, report, tcp_gbits  # noqa: E402

from tests.support import eventually_pings, wait_for  # noqa: E402
from weavenet.lab import Lab  # noqa: E402
from weavenet.lab.lab import unique_prefix  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PATHS = ("native", "raw vxlan", "weavenet fastdp")


def measure(lab: Lab, seconds: float, rounds: int) -> dict[str, Any]:
    h1, h2 = lab.hosts
    ns, undo = raw_vxlan(lab)
    sleepers = []
    try:
        raw = [int(h.run(["sh", "-c", f"ip netns exec {n} sleep {rounds * seconds * 4 + 300} "
                                      ">/dev/null 2>&1 </dev/null & echo $!"]).stdout.strip())
               for h, n in ((h1, ns[0]), (h2, ns[1]))]
        sleepers = list(zip((h1, h2), raw, strict=True))
        wait_for(lambda: ping_ms(h1, raw[0], "10.99.0.2", count=1) is not None, 10, "raw vxlan")
        h1.run(["weave", "launch", "10.0.0.1/16"])
        h2.run(["weave", "launch", "10.0.0.2/16", h1.ip])
        c1 = h1.run(["weave", "run", "10.0.1.1/24", "-t", "-i", "busybox"]).stdout.strip()
        c2 = h2.run(["weave", "run", "10.0.1.2/24", "-t", "-i", "busybox"]).stdout.strip()
        eventually_pings(h1, c1, "10.0.1.2")
        wait_for(lambda: '"overlay": "fastdp"' in h1.run(["weave", "status", "--json"]).stdout,
                 20, "fastdp")
        fdp = (h1.container_pid(c1), h2.container_pid(c2))
        ends = {"native": (None, None, h2.ip), "raw vxlan": (*raw, "10.99.0.2"),
                "weavenet fastdp": (*fdp, "10.0.1.2")}
        out: dict[str, list[float | None]] = {p: [] for p in PATHS}
        for i in range(rounds):
            for p in PATHS:
                cpid, spid, dst = ends[p]
                out[p].append(tcp_gbits(h1, h2, cpid, spid, dst, seconds))
            print(f"round {i + 1}: " + ", ".join(f"{p} {out[p][-1]}" for p in PATHS),
                  flush=True)
        return {"seconds": seconds, "rounds": rounds, "tcp_gbit_s": out}
    finally:
        for h, pid in sleepers:
            h.run(["kill", str(pid)], check=False)
        for h in lab.hosts:
            h.run(["weave", "reset"], check=False)
            h.run(["sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null"], check=False)
        for h, cmds in ((h1, undo[:2]), (h2, undo[2:])):
            for c in cmds:
                h.run(["sh", "-c", c], check=False)


def table(res: dict[str, Any]) -> str:
    tcp = res["tcp_gbit_s"]
    rows = [("round", *PATHS, "fastdp x raw")]
    for i in range(res["rounds"]):
        v = [tcp[p][i] for p in PATHS]
        r = f"{v[2] / v[1]:.2f}" if v[1] and v[2] else "n/a"
        rows.append((str(i + 1), *("n/a" if x is None else f"{x:.2f}" for x in v), r))
    med = [statistics.median([x for x in tcp[p] if x is not None] or [0.0]) for p in PATHS]
    rows.append(("median", *(f"{x:.2f}" for x in med),
                 f"{med[2] / med[1]:.2f}" if med[1] else "n/a"))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "TCP Gbit/s, one iperf3 stream, host1 -> host2\n" + "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS / "fastdp_tcp.json")
    a = p.parse_args()
    if not 1 <= a.rounds <= 50 or not 1 <= a.seconds <= 120:
        p.error("--rounds must be 1..50 and --seconds 1..120")
    with Lab(2, prefix=unique_prefix("wf")) as lab:
        res = measure(lab, a.seconds, a.rounds)
    return report(table(res), res, a.out)


if __name__ == "__main__":
    sys.exit(main())
