"""Micro-benchmark of the sealing paths: MB/s and µs per call for seal and open.

    python bench/crypto_micro.py [--seconds 0.5]

Measures `DatagramSealer.seal` / `DatagramOpener.open` (the per-batch sleeve path, including the
replay window) and the control-stream sealer/opener, for 1400-byte and 64 KB payloads. Each
measurement is bounded in time. Plaintext bytes count toward MB/s (1 MB = 10**6 bytes).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from weavenet.crypto.seal import (
    DatagramOpener,
    DatagramSealer,
    StreamOpener,
    StreamSealer,
)

SIZES = (1400, 64 * 1024)
PASS = 256  # datagrams per opener pass


def measure(run: Callable[[int], None], seconds: float, batch: int = 64) -> tuple[int, float]:
    """Run `run(batch)` until `seconds` have passed; return (calls, elapsed)."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        run(batch)
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return calls, now - start


def bench_datagram(size: int, seconds: float) -> list[tuple[str, int, float]]:
    key = os.urandom(32)
    payload = os.urandom(size)
    sealer = DatagramSealer(key)

    def seal(n: int) -> None:
        for _ in range(n):
            sealer.seal(payload)

    sealed_calls, sealed_time = measure(seal, seconds)
    # a datagram opens only once per window, so open a fixed set repeatedly, each pass with a
    # fresh opener (cheap next to 256 openings; keeps memory bounded for 64 KB payloads)
    producer = DatagramSealer(key)
    datagrams = [producer.seal(payload) for _ in range(PASS)]

    def open_(n: int) -> None:
        for _ in range(n // PASS or 1):
            opener = DatagramOpener(key)
            for datagram in datagrams:
                opener.open(datagram)

    open_calls, open_time = measure(open_, seconds, PASS)
    return [("datagram seal", sealed_calls, sealed_time), ("datagram open", open_calls, open_time)]


def bench_stream(size: int, seconds: float) -> list[tuple[str, int, float]]:
    key = os.urandom(32)
    payload = os.urandom(size)
    sealer = StreamSealer(key)

    def seal(n: int) -> None:
        for _ in range(n):
            sealer.seal(payload)

    sealed_calls, sealed_time = measure(seal, seconds)
    producer = StreamSealer(key)
    boxes = [producer.seal(payload)[4:] for _ in range(PASS)]

    def open_(n: int) -> None:
        for _ in range(n // PASS or 1):
            opener = StreamOpener(key)
            for box in boxes:
                opener.open(box)

    open_calls, open_time = measure(open_, seconds, PASS)
    return [("stream seal", sealed_calls, sealed_time), ("stream open", open_calls, open_time)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="per measurement")
    args = parser.parse_args()
    print(f"{'operation':<15} {'payload':>8} {'MB/s':>9} {'Gbit/s':>7} {'µs/call':>8}")
    for size in SIZES:
        for name, calls, elapsed in bench_datagram(size, args.seconds) + bench_stream(
            size, args.seconds
        ):
            rate = calls * size / elapsed
            print(
                f"{name:<15} {size:>8} {rate / 1e6:>9.0f} {rate * 8 / 1e9:>7.2f}"
                f" {elapsed / calls * 1e6:>8.2f}"
            )


if __name__ == "__main__":
    main()
