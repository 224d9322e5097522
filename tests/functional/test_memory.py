"""The router's memory stays flat under a flood of small frames.

Two routers (`--no-fastdp`, so every frame takes the sleeve) in namespaces joined by a veth
pair; a "container" on each. For 18 s a sender in the first container offers 64-byte UDP
datagrams as fast as one Python process sends them, far more than the sleeve carries on
this machine. The queues between the actors are bounded (tens of batches each) and capture
stops reading while the forwarder's is full, so what the routers hold must not grow with
the flood: their summed RSS (twelve processes) a few seconds into it and at its end differ by
less than 12 MB. Why that bound: everything the flood may legitimately fill is smaller (the
queues: 2 x 16 batches of 64 frames at ~1 KB of ZeroMQ and Python overhead each, ~2 MB per
queue, four data queues per pair of routers on the path; glibc keeping 1 MB of freed heap
per process), while queues a thousand batches deep, as they were, hold up to 2048 x 64
frames each: over 100 MB.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.conftest import Router, router_pair
from tests.support import wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun"),
    pytest.mark.timeout(180),
]

FLOOD_SECONDS = 18.0
WARMUP = 4.0  # seconds into the flood: queues full, buffers at their working size
GROWTH_BOUND_MB = 12.0

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, dst, end = b"x" * 64, (sys.argv[1], 5201), time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    for _ in range(256):
        try:
            s.sendto(payload, dst)
            n += 1
        except OSError:
            pass
print(n)
"""


def rss_mb(routers: list[Router]) -> float:
    total = 0
    for r in routers:
        st = r.status()
        for pid in [st["pid"], *(a["pid"] for a in st["actors"])]:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            total += int(re.search(r"^Rss:\s+(\d+) kB", text, re.M).group(1))
    return total / 1024


@pytest.fixture
def pair() -> Iterator[tuple[Router, Router, str, str]]:
    with router_pair("wmem", "--no-fastdp") as p:
        yield p.a, p.b, p.ca, p.cb


def delivered(b: Router) -> int:
    # frames written to b's bridge: the forwarder writes them to the TAP itself
    return b.actors()["forwarder"]["status"]["counters"].get("injected", 0)


def test_router_memory_stays_flat_under_a_bounded_flood(pair):
    a, b, ca, _ = pair
    before_frames = delivered(b)
    sender = subprocess.Popen(["nsenter", f"--net={ca}", sys.executable, "-c", SENDER,
                               "10.0.1.2", str(FLOOD_SECONDS)],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(WARMUP)
        early = rss_mb([a, b])
        out, _ = sender.communicate(timeout=FLOOD_SECONDS + 60)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    late = rss_mb([a, b])
    sent = int(out.strip() or 0)
    # counters ride on heartbeats (1 s): wait until two, 1.5 s apart, agree
    seen: list[int] = []

    def settled() -> int | None:
        seen.append(delivered(b) - before_frames)
        return seen[-1] if len(seen) > 1 and seen[-1] == seen[-2] else None

    frames = wait_for(settled, 15, "b's counters to settle", interval=1.5)
    assert frames > 20_000, f"the flood hardly reached b's container port: {frames} frames"
    # the flood was real and beyond what the sleeve carries: not all of it went through
    assert sent > frames, (sent, frames)
    assert late - early < GROWTH_BOUND_MB, (early, late, sent, frames)
