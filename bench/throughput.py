"""Container-to-container throughput, packet rate, latency and router memory across two lab hosts.

Every overlay figure is printed beside the native one (the two hosts' underlay, no overlay)
measured in the same run, as a ratio. Run as root:

    .venv/bin/python bench/throughput.py [--seconds 5] [--password PW]

Writes bench/results/throughput.json. Every load is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

# The probes (ping, listening sockets, waiting) are the tests' own.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import eventually_pings, listening, wait_for  # noqa: E402
from weavenet.lab import Host, Lab  # noqa: E402
from weavenet.lab.lab import unique_prefix  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def iperf_server(host: Host, pid: int | None, port: int = 5201):
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    proc = host.popen([*prefix, "iperf3", "-s", "-1", "-p", str(port)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # iperf3 says nothing when it is ready (UDP tests too start on its TCP control port)
    wait_for(lambda: listening(host, port, pid=pid), 10, f"iperf3 on {host.name}:{port}")
    return proc


def iperf_client(host: Host, pid: int | None, dst: str, seconds: float, *extra: str) -> dict:
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    r = host.run([*prefix, "iperf3", "-c", dst, "-t", str(seconds), "-J", *extra],
                 check=False, timeout=seconds + 60)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {"error": r.stderr.strip() or "no output"}


def tcp_gbits(client: Host, server: Host, cpid: int | None, spid: int | None, dst: str,
              seconds: float) -> float | None:
    srv = iperf_server(server, spid)
    try:
        out = iperf_client(client, cpid, dst, seconds)
    finally:
        srv.kill()
        srv.wait()
    try:
        return out["end"]["sum_received"]["bits_per_second"] / 1e9
    except (KeyError, TypeError):
        print(f"  tcp: {out.get('error', 'no result')}", file=sys.stderr)
        return None


# Offered rates of 64-byte datagrams, packets/s (0: as fast as iperf3 can send). A flood far
# beyond capacity makes every queue drop and measures the collapse, not the capacity, so the
# figure is the best rate *received* over these offers.
UDP_OFFERS = (25_000, 50_000, 100_000, 0)


def udp_pps(client: Host, server: Host, cpid: int | None, spid: int | None, dst: str,
            seconds: float) -> float | None:
    """Small (64-byte payload) UDP datagrams per second received at the best offered rate."""
    best = None
    for offer in UDP_OFFERS:
        srv = iperf_server(server, spid)
        try:
            bits = str(offer * 64 * 8) if offer else "0"
            out = iperf_client(client, cpid, dst, seconds / 2, "-u", "-l", "64", "-b", bits)
        finally:
            srv.kill()
            srv.wait()
        try:
            s = out["end"]["sum"]
            received = (s["packets"] - s["lost_packets"]) / s["seconds"]
        except (KeyError, TypeError, ZeroDivisionError):
            print(f"  udp at {offer or 'max'} pps: {out.get('error', 'no result')}",
                  file=sys.stderr)
            continue
        best = received if best is None else max(best, received)
    return best


def ping_ms(host: Host, pid: int | None, dst: str, count: int = 50) -> float | None:
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    r = host.run([*prefix, "ping", "-q", "-c", str(count), "-i", "0.02", dst], check=False,
                 timeout=60)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return float(m.group(1)) if m else None


def memory_mb(host: Host) -> dict[str, dict[str, float]]:
    """RSS and PSS of the supervisor and each actor. Summed RSS counts the shared libraries
    (libpython, libzmq, libsodium) once per process; PSS shares them out, so its sum is what
    the router really occupies."""
    st = json.loads(host.run(["weave", "status", "--json"]).stdout)
    pids = {"supervisor": st["pid"], **{a["name"]: a["pid"] for a in st["actors"]}}
    out: dict[str, dict[str, float]] = {"rss": {}, "pss": {}}
    for name, pid in pids.items():
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except (OSError, TypeError):
            continue
        for kind, field in (("rss", "Rss"), ("pss", "Pss")):
            m = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
            if m:
                out[kind][name] = int(m.group(1)) / 1024
    for kind in out:
        out[kind]["total"] = sum(out[kind].values())
    return out


def measure(lab: Lab, seconds: float, password: str | None) -> dict[str, Any]:
    h1, h2 = lab.hosts
    res: dict[str, Any] = {"seconds": seconds}
    print("native (underlay, no overlay) ...", flush=True)
    res["native"] = {
        "tcp_gbit_s": tcp_gbits(h1, h2, None, None, h2.ip, seconds),
        "udp64_pps": udp_pps(h1, h2, None, None, h2.ip, seconds),
        "ping_ms": ping_ms(h1, None, h2.ip),
    }
    pw = ["--password", password] if password else []
    h1.run(["weave", "launch", "10.0.0.1/16", *pw])
    h2.run(["weave", "launch", "10.0.0.2/16", *pw, h1.ip])
    c1 = h1.run(["weave", "run", "10.0.1.1/24", "-t", "-i", "busybox"]).stdout.strip()
    c2 = h2.run(["weave", "run", "10.0.1.2/24", "-t", "-i", "busybox"]).stdout.strip()
    eventually_pings(h1, c1, "10.0.1.2")  # raises if the overlay never carries a ping
    p1, p2 = h1.container_pid(c1), h2.container_pid(c2)
    label = "weavenet (encrypted)" if password else "weavenet"
    print(f"{label} (container to container across hosts) ...", flush=True)
    res["overlay"] = {
        "tcp_gbit_s": tcp_gbits(h1, h2, p1, p2, "10.0.1.2", seconds),
        "udp64_pps": udp_pps(h1, h2, p1, p2, "10.0.1.2", seconds),
        "ping_ms": ping_ms(h1, p1, "10.0.1.2"),
    }
    res["memory_mb"] = memory_mb(h1)
    res["label"] = label
    return res


def table(res: dict[str, Any]) -> str:
    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    def ratio(o: float | None, n: float | None) -> str:
        return "n/a" if not o or not n else f"{o / n:.2f}"

    n, o = res["native"], res["overlay"]
    rows = [
        ("metric", "native", res["label"], "ratio"),
        ("TCP throughput (Gbit/s)", fmt(n["tcp_gbit_s"], ".2f"), fmt(o["tcp_gbit_s"], ".2f"),
         ratio(o["tcp_gbit_s"], n["tcp_gbit_s"])),
        ("UDP 64-byte (packets/s)", fmt(n["udp64_pps"], ",.0f"), fmt(o["udp64_pps"], ",.0f"),
         ratio(o["udp64_pps"], n["udp64_pps"])),
        ("ping RTT (ms)", fmt(n["ping_ms"], ".3f"), fmt(o["ping_ms"], ".3f"),
         ratio(o["ping_ms"], n["ping_ms"])),
        ("router RSS, summed (MB)", "-", f"{res['memory_mb']['rss'].get('total', 0):.0f}", "-"),
        ("router PSS, summed (MB)", "-", f"{res['memory_mb']['pss'].get('total', 0):.0f}", "-"),
    ]
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * x for x in w))
    per = ", ".join(f"{k} {v:.0f}" for k, v in res["memory_mb"]["rss"].items() if k != "total")
    return "\n".join(lines) + f"\nRSS per process (MB): {per}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--password", help="measure the encrypted sleeve")
    p.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    a = p.parse_args()
    with Lab(2, prefix=unique_prefix("wb")) as lab:
        try:
            res = measure(lab, a.seconds, a.password)
        finally:
            for h in lab.hosts:
                h.run(["weave", "reset"], check=False)
    print(table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"written {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
