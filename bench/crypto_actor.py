"""Datagrams per second sealed through the crypto actor process (bus, codec and all).

    python bench/crypto_actor.py [--seconds 1.5] [--batch 32] [--in-flight 4]

Starts `python -m actors.crypto` under the functional tests' fake supervisor (no root needed),
installs a session key, and keeps `--in-flight` seal requests of `--batch` payloads queued on
its data socket, as the forwarder does, for 1400-byte and 60000-byte payloads. Compare with
bench/crypto_micro.py, the same sealing in-process: the difference is the actor's overhead.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# The fake supervisor lives with the crypto actor's functional tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.functional.test_crypto_actor import (  # noqa: E402
    PEER_B,
    FakeSupervisor,
    Forwarder,
    session_pair,
)
from weavenet.crypto.protocol import OVERHEAD, decode_reply, encode_request  # noqa: E402

SIZES = (1400, 60000)


def seal_rate(fwd: Forwarder, size: int, batch: int, in_flight: int, seconds: float) -> float:
    """Datagrams sealed per second with `in_flight` requests kept queued for `seconds`."""
    parts = encode_request("seal", PEER_B, [os.urandom(size)] * batch)
    sent = done = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds or done < sent:
        while sent - done < in_flight and time.monotonic() - start < seconds:
            fwd.sock.send_multipart(parts, copy=False)
            sent += 1
        if not fwd.sock.poll(5000):
            raise SystemExit("the crypto actor stopped answering")
        reply, results = decode_reply(fwd.sock.recv_multipart(copy=False))
        if reply.failed or len(results[-1]) != size + OVERHEAD:
            raise SystemExit(f"a seal failed: {reply}")
        done += 1
    return done * batch / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per payload size")
    parser.add_argument("--batch", type=int, default=32, help="payloads per request")
    parser.add_argument("--in-flight", type=int, default=4, help="requests kept queued")
    args = parser.parse_args()
    # a short base path: ipc socket paths are limited to 107 bytes
    base = Path(tempfile.mkdtemp(prefix="wn-bench-", dir="/tmp"))
    sup = FakeSupervisor(base)
    try:
        sup.wait_ready()
        keys, _ = session_pair(connection_id=7)
        sup.install(PEER_B, 7, keys.udp_send, keys.udp_recv)
        fwd = Forwarder(sup.ctx, sup.endpoints.crypto)
        print(f"{'payload':>8} {'datagrams/s':>12} {'Gbit/s':>7}")
        for size in SIZES:
            rate = seal_rate(fwd, size, args.batch, args.in_flight, args.seconds)
            print(f"{size:>8} {rate:>12,.0f} {rate * size * 8 / 1e9:>7.2f}")
    finally:
        sup.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
