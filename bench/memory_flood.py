"""Router memory over a long bounded flood: is it flat once the flood is under way?

Two lab hosts, weavenet on the sleeve (``--no-fastdp``, or encrypted with ``--password``),
one container each. The routers' memory (RSS and PSS summed over the supervisor and its
actors, for each host) is sampled idle, then every ``--every`` seconds while iperf3 floods
64-byte UDP datagrams as fast as it can from one container to the other for ``--seconds``
(60 by default), with a TCP stream beside it for the first half. Printed: the samples, and
the growth from the end of the warm-up (``--warmup`` seconds into the flood: glibc keeps
the heap it needed and ZeroMQ its buffers) to the end, which a router whose memory follows
what it is offered rather than what it holds by design would show. Run as root:

    .venv/bin/python bench/memory_flood.py [--seconds 60] [--password PW]

Writes bench/results/memory_flood.json. Every load is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import RESULTS, container_pair, iperf_server, memory_mb  # noqa: E402

from weavenet.lab import Lab  # noqa: E402
from weavenet.lab.lab import unique_prefix  # noqa: E402

IDLE = 8.0  # seconds after launch before the idle sample


def totals(lab: Lab) -> dict[str, Any]:
    """host -> (RSS, PSS) in MB, summed over its router's processes; and under "rss" each
    host's RSS per process."""
    out: dict[str, Any] = {"rss": {}}
    for h in lab.hosts:
        m = memory_mb(h)
        out[h.name] = (m["rss"]["total"], m["pss"]["total"])
        out["rss"][h.name] = {k: round(v, 1) for k, v in m["rss"].items() if k != "total"}
    return out


def run(lab: Lab, seconds: float, every: float, warmup: float, flags: list[str]) -> dict:
    h1, h2 = lab.hosts
    with container_pair(lab, *flags) as (p1, p2):
        time.sleep(IDLE)
        samples: list[dict[str, Any]] = [{"t": 0.0, "idle": True, **totals(lab)}]
        udp_srv = iperf_server(h2, p2, 5201)
        tcp_srv = iperf_server(h2, p2, 5202)
        enter = ["nsenter", "-t", str(p1), "-n", "iperf3", "-c", "10.0.1.2"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        udp = h1.popen([*enter, "-p", "5201", "-u", "-l", "64", "-b", "0", "-t", str(seconds)],
                       **quiet)
        tcp = h1.popen([*enter, "-p", "5202", "-t", str(seconds / 2)], **quiet)
        start = time.monotonic()
        try:
            while udp.poll() is None and time.monotonic() - start < seconds + 30:
                time.sleep(every)
                if udp.poll() is None:
                    samples.append({"t": round(time.monotonic() - start, 1), **totals(lab)})
        finally:
            for p in (udp, tcp, udp_srv, tcp_srv):
                p.kill()
                p.wait()
        return {"flags": flags, "seconds": seconds, "warmup": warmup, "samples": samples}


def report(res: dict) -> None:
    samples = res["samples"]
    hosts = [k for k in samples[0] if k not in ("t", "idle", "rss")]
    print(f"weavenet {' '.join(res['flags'])}: router memory, MB summed over its processes")
    print("| t (s) | " + " | ".join(f"{h} RSS (PSS)" for h in hosts) + " |")
    print("| ---: | " + " | ".join("---:" for _ in hosts) + " |")
    for s in samples:
        t = "idle" if s.get("idle") else f"{s['t']:.0f}"
        print(f"| {t} | " + " | ".join(f"{s[h][0]:.1f} ({s[h][1]:.1f})" for h in hosts) + " |")
    warm = [s for s in samples if not s.get("idle") and s["t"] >= res["warmup"]]
    if len(warm) >= 2:
        for h in hosts:
            rss = [s[h][0] for s in warm]
            top = max(warm, key=lambda s: s[h][0])
            print(f"{h}: from {warm[0]['t']:.0f} s to {warm[-1]['t']:.0f} s RSS "
                  f"{rss[-1] - rss[0]:+.1f} MB (max {max(rss):.1f} at {top['t']:.0f} s, idle "
                  f"{samples[0][h][0]:.1f}); per process idle {samples[0]['rss'][h]}, "
                  f"at the max {top['rss'][h]}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--every", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=10.0)
    p.add_argument("--password", help="flood the encrypted sleeve")
    p.add_argument("--out", type=Path, default=RESULTS / "memory_flood.json")
    args = p.parse_args()
    flags = ["--password", args.password] if args.password else ["--no-fastdp"]
    with Lab(2, prefix=unique_prefix("wm")) as lab:
        res = run(lab, args.seconds, args.every, args.warmup, flags)
    report(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
