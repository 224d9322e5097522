"""What killing one actor, or `weave stop` + `weave launch`, costs cross-host traffic.

Two lab hosts, one container on each; a ping every 50 ms from host1's container to host2's.
For each actor (kill -9 on one host) and for `weave stop` + `weave launch`, in clear and with
a password, the figure is the longest gap between two replies: what the disruption cost the
containers (a steady ping shows 0.05 s). Run as root:

    .venv/bin/python bench/disruption.py [--rounds 1] [--on host1,host2] [--modes clear,password]

Bounded in time: each disruption waits at most --timeout seconds for the ping to be steady
again (a gap that never closes is reported as that bound). Only the lab's namespaces are used.
Prints a table and writes bench/results/disruption.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

# The probes (ping, waiting, the weave CLI) are the tests' own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import (  # noqa: E402
    disruption_gap,
    eventually_pings,
    kill_actor,
    weave,
    weave_result,
)
from weavenet.lab import Host, Lab  # noqa: E402
from weavenet.lab.lab import unique_prefix  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ACTORS = ("capture", "forwarder", "crypto", "gossip", "netconf")
RESTART = "stop+launch"
PASSWORD = "disruption-bench"
STEADY = 2.0  # seconds of unbroken replies that end a measurement


def launch_args(lab: Lab, host: Host, password: str | None) -> list[str]:
    i = lab.hosts.index(host)
    peers = [lab.hosts[0].ip] if i else []  # host2.. name host1, as in the seed
    return ["launch", f"10.0.0.{i + 1}/16", *peers, *(["--password", password] if password
                                                     else [])]


def disrupt(lab: Lab, host: Host, what: str, password: str | None) -> None:
    if what == RESTART:
        weave(host, "stop")
        weave(host, *launch_args(lab, host, password))
    else:
        kill_actor(host, what)  # a process of the lab's router, started by this script


def run(lab: Lab, modes: list[str], on: list[Host], rounds: int,
        timeout: float) -> list[dict[str, Any]]:
    h1, h2 = lab.hosts
    rows: list[dict[str, Any]] = []
    c1 = ""  # host1's container; the ping goes from it to host2's
    for mode in modes:
        password = PASSWORD if mode == "password" else None
        for h in lab.hosts:
            weave_result(h, "stop")  # not running before the first mode
            weave(h, *launch_args(lab, h, password))
        if not c1:  # the containers outlive relaunches
            c1 = weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox")
            weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")
        eventually_pings(h1, c1, "10.0.1.2", timeout=60)
        for host in on:
            for what in (*ACTORS, RESTART):
                act = partial(disrupt, lab, host, what, password)
                gaps = [disruption_gap(h1, c1, "10.0.1.2", act, STEADY, timeout)
                        for _ in range(rounds)]
                row = {"mode": mode, "host": host.name, "disruption": what,
                       "gaps_s": [round(g, 2) for g in gaps]}
                print(f"{mode:9} {host.name:6} {what:12} longest gap "
                      + " ".join(f"{g:.2f}" for g in gaps) + " s", flush=True)
                rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    cols = sorted({(r["mode"], r["host"]) for r in rows},
                  key=lambda c: (c[1], c[0] != "clear"))
    header = ["disruption", *(f"{host} {mode}" for mode, host in cols)]
    lines = [header]
    for what in (*ACTORS, RESTART):
        cells = [what]
        for mode, host in cols:
            gaps = next((r["gaps_s"] for r in rows if (r["mode"], r["host"],
                                                       r["disruption"]) == (mode, host, what)),
                        None)
            cells.append("-" if gaps is None else f"{max(gaps):.2f}")
        lines.append(cells)
    w = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(c.ljust(w[i]) for i, c in enumerate(line)) for line in lines]
    out.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(out) + "\n(longest gap between replies of a 50 ms ping, seconds; " \
        "the worst of the rounds)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1, help="measurements per disruption")
    p.add_argument("--on", default="host1,host2", help="the hosts whose router is disrupted")
    p.add_argument("--modes", default="clear,password")
    p.add_argument("--timeout", type=float, default=15.0,
                   help="longest wait for the ping to be steady again (s)")
    p.add_argument("--out", type=Path, default=RESULTS / "disruption.json")
    p.add_argument("--logs", type=Path, help="save each host's `weave logs` in this directory")
    a = p.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    if not set(modes) <= {"clear", "password"}:
        p.error("--modes: clear and/or password")
    started = time.monotonic()
    with Lab(2, prefix=unique_prefix("wb")) as lab:
        on = [lab.host(name) for name in a.on.split(",") if name]
        try:
            rows = run(lab, modes, on, a.rounds, a.timeout)
        finally:
            for h in lab.hosts:
                if a.logs:
                    a.logs.mkdir(parents=True, exist_ok=True)
                    (a.logs / f"{h.name}.log").write_text(weave_result(h, "logs").stdout)
                h.run(["weave", "reset"], check=False)
    print(table(rows))
    print(f"total {time.monotonic() - started:.0f} s; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"rows": rows, "load": os.getloadavg()}, indent=2))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
