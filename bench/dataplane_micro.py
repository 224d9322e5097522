"""Micro-benchmark of the sans-IO data-plane core: frames/s per stage, on one core.

    python bench/dataplane_micro.py [--seconds 1.0] [--size 1400] [--batch 64] [--run 1]

Each stage runs repeatedly over one batch for about ``--seconds`` and prints frames/s.
No sockets: this is the Python cost per frame the capture/forwarder actors add on top of I/O.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from weavenet.dataplane.batch import decode_batch, encode_batch
from weavenet.dataplane.forwarding import Forwarder, RouteTable
from weavenet.dataplane.maccache import MacCache
from weavenet.dataplane.sleeve import pack_datagram, peer_to_wire, unpack_datagram

A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, n >> 8 & 0xFF, n & 0xFF])


def measure(name: str, frames_per_call: int, fn: Callable[[], object], seconds: float) -> float:
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        calls += 20
        now = time.perf_counter()
        if now >= deadline:
            break
    rate = calls * frames_per_call / (now - start)
    print(f"{name:<44} {rate:>12,.0f} frames/s")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=1400, help="frame size incl. vnet header")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--run",
        type=int,
        default=1,
        help="consecutive frames per flow (1 = every frame a different MAC pair)",
    )
    args = ap.parse_args()
    n, size, secs, run = args.batch, args.size, args.seconds, max(1, args.run)

    # 16 local containers talking to 16 containers at C, via B
    frames = [
        bytes(10) + mac(0x100 + i // run % 16) + mac(i // run % 16) + b"\x08\x00" + bytes(size - 24)
        for i in range(n)
    ]
    routes_a = RouteTable({B: B, C: B}, {A: [B], B: [], C: []})
    fwd = Forwarder(A, MacCache(), routes_a)
    for i in range(16):
        fwd.macs.learn(mac(0x100 + i), C, 0.0)
    relay = Forwarder(B, MacCache(), RouteTable({A: A, C: C}, {A: [C], B: [A, C], C: [A]}))
    sink = Forwarder(C, MacCache(), RouteTable({A: B, B: B}, {A: [], B: [], C: [B]}))
    wa, wc = peer_to_wire(A), peer_to_wire(C)

    parts = encode_batch({"src": A}, frames)
    dgrams_pmtu = pack_datagram(frames, 1472, sender=wa, src_peer=wa, dst_peer=wc).datagrams
    dgrams_big = pack_datagram(frames, 65507, sender=wa, src_peer=wa, dst_peer=wc).datagrams
    print(
        f"batch {n} frames of {size} bytes, flow runs of {run}; "
        f"{len(dgrams_big)} datagrams of <=65507, "
        f"{len(dgrams_pmtu)} of <=1472"
    )

    measure("zmq batch encode", n, lambda: encode_batch({"src": A}, frames), secs)
    measure("zmq batch decode", n, lambda: decode_batch(parts), secs)
    measure(
        "sleeve pack (max 65507)",
        n,
        lambda: pack_datagram(frames, 65507, sender=wa, src_peer=wa, dst_peer=wc),
        secs,
    )
    measure(
        "sleeve pack (max 1472)",
        n,
        lambda: pack_datagram(frames, 1472, sender=wa, src_peer=wa, dst_peer=wc),
        secs,
    )
    measure("sleeve unpack (max 65507)", n, lambda: [unpack_datagram(d) for d in dgrams_big], secs)
    measure("decision: captured, unicast via relay", n, lambda: fwd.captured(frames, 1.0), secs)
    measure("decision: received, relay", n, lambda: relay.received(A, C, frames, 1.0), secs)
    measure("decision: received, inject", n, lambda: sink.received(A, C, frames, 1.0), secs)

    def pipeline() -> None:
        header, got = decode_batch(parts)
        plan = fwd.captured(got, 1.0)
        for (_hop, src, dst), batch in plan.send.items():
            packed = pack_datagram(batch, 65507, sender=wa, src_peer=wa, dst_peer=wc)
            for d in packed.datagrams:
                h, rx = unpack_datagram(d)
                sink.received(src, dst, rx, 1.0)

    measure("pipeline: decode+decide+pack+unpack+decide", n, pipeline, secs)


if __name__ == "__main__":
    main()
