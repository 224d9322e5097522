"""Container-to-container throughput, packet rate, latency and router memory across two lab hosts.

Measured in the same run: native (the two hosts' underlay, no overlay); a hand-built kernel
VXLAN path between the same hosts (netns -> veth -> bridge -> vxlan -> underlay: the ideal the
fast datapath aims at); weavenet with its default fast datapath; weavenet with --no-fastdp (the
sleeve); and, with --password, the encrypted sleeve. Each figure is printed with its ratio to
native and to the raw VXLAN path. For weavenet also: an overload figure (64-byte UDP offered
at twice the best rate received, and what is still delivered, as a fraction of that best,
beside what the receiving iperf3's full socket dropped meanwhile, per second),
and host1's router memory, RSS and PSS summed over its processes (supervisor and actors),
with how much the RSS grew over the run's bounded floods. Run as root:

    .venv/bin/python bench/throughput.py [--seconds 5] [--password PW]

Writes bench/results/throughput.json. Every load is bounded by --seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
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


def udp64(client: Host, server: Host, cpid: int | None, spid: int | None, dst: str,
          seconds: float, offer: float) -> tuple[float, float] | None:
    """64-byte UDP offered at ``offer`` packets/s (0: flat out) for ``seconds``: the rates
    (packets/s) sent and received, None (said on stderr) when iperf3 gave no result."""
    srv = iperf_server(server, spid)
    try:
        bits = str(int(offer * 64 * 8)) if offer else "0"
        out = iperf_client(client, cpid, dst, seconds, "-u", "-l", "64", "-b", bits)
    finally:
        srv.kill()
        srv.wait()
    try:
        s = out["end"]["sum"]
        return s["packets"] / s["seconds"], (s["packets"] - s["lost_packets"]) / s["seconds"]
    except (KeyError, TypeError, ZeroDivisionError):
        print(f"  udp at {offer or 'max'} pps: {out.get('error', 'no result')}",
              file=sys.stderr)
        return None


def udp_pps(client: Host, server: Host, cpid: int | None, spid: int | None, dst: str,
            seconds: float) -> float | None:
    """Small (64-byte payload) UDP datagrams per second received at the best offered rate."""
    got = [r[1] for offer in UDP_OFFERS
           if (r := udp64(client, server, cpid, spid, dst, seconds / 2, offer))]
    return max(got) if got else None


def socket_drops(host: Host, pid: int | None) -> int | None:
    """UDP datagrams the receiving namespace's sockets dropped, full (RcvbufErrors)."""
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    lines = [line.split() for line in host.run([*prefix, "cat", "/proc/net/snmp"],
                                                check=False).stdout.splitlines()
             if line.startswith("Udp:")]
    if len(lines) < 2 or "RcvbufErrors" not in lines[0]:
        return None
    return int(lines[1][lines[0].index("RcvbufErrors")])


def overload(client: Host, server: Host, cpid: int | None, spid: int | None, dst: str,
             seconds: float, best: float | None) -> dict[str, float] | None:
    """64-byte UDP offered at twice ``best`` (packets/s): what is delivered, and its fraction
    of ``best``. A sleeve that collapses when overloaded delivers far less than it can.
    Also how many datagrams per second the receiving iperf3's own socket dropped (it was
    full: the receiver did not get the CPU to read it), which "delivered" does not count."""
    if not best:
        return None
    drops_before = socket_drops(server, spid)
    r = udp64(client, server, cpid, spid, dst, seconds, 2 * best)
    drops_after = socket_drops(server, spid)
    if r is None:
        return None
    sent, got = r
    res = {"offered_pps": 2 * best, "sent_pps": sent, "delivered_pps": got,
           "fraction_of_best": got / best}
    if drops_before is not None and drops_after is not None:
        res["socket_drops_pps"] = (drops_after - drops_before) / seconds
    return res


def ping_ms(host: Host, pid: int | None, dst: str, count: int = 50) -> float | None:
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    r = host.run([*prefix, "ping", "-q", "-c", str(count), "-i", "0.02", dst], check=False,
                 timeout=60)
    m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
    return float(m.group(1)) if m else None


def memory_mb(host: Host) -> dict[str, dict[str, float]]:
    """RSS and PSS of the supervisor and each actor, and their sums (``total``). Summed RSS
    counts the shared libraries (libpython, libzmq, libsodium) once per process; PSS shares
    them out, so its sum is what the router really occupies."""
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


RAW_VNI, RAW_PORT = 99, 4789  # not weave's port: both paths coexist on the hosts


def raw_vxlan(lab: Lab) -> tuple[list[str], list[str]]:
    """The hand-built kernel path: on each host a namespace 10.99.0.N/24 on a bridge with a
    VXLAN device whose one flood entry is the other host. Returns the namespaces' paths and the
    commands that remove it all."""
    h1, h2 = lab.hosts
    tag = unique_prefix("rv")
    paths, undo = [], []
    for i, (h, other) in enumerate(((h1, h2), (h2, h1))):
        ns = f"{tag}{i}"
        h.run(["ip", "netns", "add", ns])
        undo.append(f"ip netns del {ns}")
        cmds = [
            f"ip link add {tag}br type bridge",
            f"ip link add {tag}vx type vxlan id {RAW_VNI} dstport {RAW_PORT} nolearning",
            f"ip link set {tag}vx master {tag}br mtu 1450 up",
            f"bridge fdb append 00:00:00:00:00:00 dev {tag}vx dst {other.ip}",
            f"ip link add {tag}v0 mtu 1450 type veth peer name eth0 netns {ns}",
            f"ip link set {tag}v0 master {tag}br up",
            f"ip link set {tag}br up",
            f"ip netns exec {ns} ip addr add 10.99.0.{i + 1}/24 dev eth0",
            f"ip netns exec {ns} ip link set eth0 mtu 1450 up",
            f"ip netns exec {ns} ip link set lo up",
        ]
        for c in cmds:
            h.run(["sh", "-c", c])
        undo.append(f"ip link del {tag}br; ip link del {tag}vx; ip link del {tag}v0")
        paths.append(ns)
    return paths, undo


def figures(h1: Host, h2: Host, p1: Any, p2: Any, dst: str, seconds: float,
            overloaded: bool = False) -> dict[str, Any]:
    res = {
        "tcp_gbit_s": tcp_gbits(h1, h2, p1, p2, dst, seconds),
        "udp64_pps": udp_pps(h1, h2, p1, p2, dst, seconds),
        "ping_ms": ping_ms(h1, p1, dst),
    }
    if overloaded:
        res["udp64_overload"] = overload(h1, h2, p1, p2, dst, seconds, res["udp64_pps"])
    return res


@contextlib.contextmanager
def container_pair(lab: Lab, *flags: str) -> Iterator[tuple[int, int]]:
    """weavenet launched on both hosts with ``flags``, a container on each (10.0.1.1 on host1,
    10.0.1.2 on host2) that pings the other: yields their pids, then resets both hosts."""
    h1, h2 = lab.hosts
    h1.run(["weave", "launch", "10.0.0.1/16", *flags])
    h2.run(["weave", "launch", "10.0.0.2/16", *flags, h1.ip])
    try:
        c1 = h1.run(["weave", "run", "10.0.1.1/24", "-t", "-i", "busybox"]).stdout.strip()
        c2 = h2.run(["weave", "run", "10.0.1.2/24", "-t", "-i", "busybox"]).stdout.strip()
        eventually_pings(h1, c1, "10.0.1.2")  # raises if the overlay never carries a ping
        yield h1.container_pid(c1), h2.container_pid(c2)
    finally:
        for h in lab.hosts:
            h.run(["weave", "reset"], check=False)
            h.run(["sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null"], check=False)


def weavenet(lab: Lab, seconds: float, *flags: str) -> dict[str, Any]:
    h1, h2 = lab.hosts
    with container_pair(lab, *flags) as (p1, p2):
        if "--no-fastdp" not in flags and "--password" not in flags:
            # give the connection its fastdp heartbeats (a few seconds at most)
            wait_for(lambda: '"overlay": "fastdp"' in h1.run(
                ["weave", "status", "--json"]).stdout, 20, "fastdp")
        before = memory_mb(h1)
        res = figures(h1, h2, p1, p2, "10.0.1.2", seconds, overloaded=True)
        res["memory_mb"] = memory_mb(h1)
        res["memory_mb"]["before"] = before
        # the floods are bounded (each by --seconds): a router whose memory follows what it is
        # offered, not what it holds by design, grows here
        res["memory_mb"]["rss_growth"] = (res["memory_mb"]["rss"].get("total", 0)
                                          - before["rss"].get("total", 0))
        return res


def measure(lab: Lab, seconds: float, password: str | None) -> dict[str, Any]:
    h1, h2 = lab.hosts
    res: dict[str, Any] = {"seconds": seconds, "rows": {}}
    rows = res["rows"]
    print("native (underlay, no overlay) ...", flush=True)
    rows["native"] = figures(h1, h2, None, None, h2.ip, seconds)
    print("raw kernel VXLAN (hand-built) ...", flush=True)
    paths, undo = raw_vxlan(lab)
    try:
        # a process in each namespace, for nsenter -t PID like the containers'
        p1, p2 = (int(h.run(["sh", "-c", f"ip netns exec {ns} sleep 600 >/dev/null 2>&1 "
                                         "</dev/null & echo $!"]).stdout.strip())
                  for h, ns in ((h1, paths[0]), (h2, paths[1])))
        wait_for(lambda: ping_ms(h1, p1, "10.99.0.2", count=1) is not None, 10, "raw vxlan")
        rows["raw vxlan"] = figures(h1, h2, p1, p2, "10.99.0.2", seconds)
        h1.run(["kill", str(p1)], check=False)
        h2.run(["kill", str(p2)], check=False)
    finally:
        for h, cmds in ((h1, undo[:2]), (h2, undo[2:])):
            for c in cmds:
                h.run(["sh", "-c", c], check=False)
    print("weavenet, fast datapath (default) ...", flush=True)
    rows["weavenet fastdp"] = weavenet(lab, seconds)
    print("weavenet --no-fastdp (sleeve) ...", flush=True)
    rows["weavenet sleeve"] = weavenet(lab, seconds, "--no-fastdp")
    if password:
        print("weavenet encrypted (sleeve) ...", flush=True)
        rows["weavenet encrypted"] = weavenet(lab, seconds, "--password", password)
    return res


def table(res: dict[str, Any]) -> str:
    def fmt(v: float | None, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    def ratio(o: float | None, n: float | None) -> str:
        return "n/a" if not o or not n else f"{o / n:.2f}"

    rows = res["rows"]
    native, raw = rows["native"], rows.get("raw vxlan", {})
    def mem(r: dict[str, Any], kind: str) -> str:
        m = r.get("memory_mb")
        return f"{m[kind].get('total', 0):.0f}" if m else "-"

    out = [("path", "TCP Gbit/s", "x native", "x raw", "UDP64 pps", "x native", "x raw",
            "UDP64 2x pps", "x best", "2x sock drops", "ping ms", "x native", "x raw",
            "RSS MB", "PSS MB", "RSS +MB")]
    for name, r in rows.items():
        over = r.get("udp64_overload")
        growth = r.get("memory_mb", {}).get("rss_growth")
        out.append((
            name,
            fmt(r["tcp_gbit_s"], ".2f"), ratio(r["tcp_gbit_s"], native["tcp_gbit_s"]),
            ratio(r["tcp_gbit_s"], raw.get("tcp_gbit_s")),
            fmt(r["udp64_pps"], ",.0f"), ratio(r["udp64_pps"], native["udp64_pps"]),
            ratio(r["udp64_pps"], raw.get("udp64_pps")),
            fmt(over["delivered_pps"], ",.0f") if over else "-",
            fmt(over["fraction_of_best"], ".2f") if over else "-",
            fmt(over.get("socket_drops_pps"), ",.0f") if over else "-",
            fmt(r["ping_ms"], ".3f"), ratio(r["ping_ms"], native["ping_ms"]),
            ratio(r["ping_ms"], raw.get("ping_ms")),
            mem(r, "rss"), mem(r, "pss"), fmt(growth, "+.1f") if growth is not None else "-",
        ))
    w = [max(len(r[i]) for r in out) for i in range(len(out[0]))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in out]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


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
    return report(table(res), res, a.out)


def report(text: str, res: dict[str, Any], out: Path) -> int:
    """Print a benchmark's table and write its figures as JSON to ``out``."""
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
