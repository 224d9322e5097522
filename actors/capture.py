"""The capture actor: the router's reading port on the weave bridge.

It attaches a queue of the persistent multi-queue TAP ``weave-tap`` (created by netconf) with
virtio-net headers and TSO/checksum offloads, reads frames in batches and PUSHes them to the
forwarder. It never blocks: a full queue is a counted drop. Everything it handles is
"virtio-net header + Ethernet frame". Its queue is the TAP's only attached one, so the kernel
steers every frame the bridge sends to the TAP here.

It writes nothing: frames for our bridge (received from peers, opened by crypto, replies the
forwarder makes) are written by the forwarder itself through a detached queue of the same TAP
(see the forwarder's docstring); they no longer make a ZeroMQ hop back through capture, and
they keep flowing while capture restarts.

Socket (bound here; batches as in :mod:`weavenet.dataplane.batch`):

* PUSH ``Endpoints.frames_out``: frames read from the TAP, to the forwarder.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import zmq

from weavenet.dataplane.batch import encode_batch, tune_malloc
from weavenet.host import tap
from weavenet.host.tap import ROUTER_PORT
from weavenet.runtime.actor import Actor, main
from weavenet.runtime.counters import Counters

READ_BATCH = 64  # frames per read batch (one ZeroMQ message)
READS_PER_WAKEUP = 4  # batches read before going back to the poller
QUEUE_HWM = 1024  # batches
TAP_WAIT = 5.0  # seconds to wait for netconf's TAP before giving up (the supervisor restarts us)

# drop reasons
QUEUE_FULL = "queue_full"  # forwarder not keeping up (or not there): frames read, not passed on


class TapMissing(RuntimeError):
    pass


def wait_for_tap(name: str, timeout: float) -> tap.TapHandle:
    """Attach to the existing TAP ``name`` (netconf makes it), retrying for ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return tap.open_existing(name)
        except OSError as exc:
            reason = str(exc)
        if time.monotonic() >= deadline:
            raise TapMissing(f"TAP {name} unavailable after {timeout}s: {reason}")
        time.sleep(0.2)


class Capture(Actor):
    NAME = "capture"

    def setup(self) -> None:
        tune_malloc()
        self.counters = Counters()
        try:
            self.tap = wait_for_tap(ROUTER_PORT, TAP_WAIT)
        except TapMissing as exc:
            self.log.error("tap_unavailable", reason=str(exc))
            raise SystemExit(1) from None
        self.log.info("tap_opened", tap=self.tap.ifname, offloads=self.tap.offloads)
        self.out = self.ctx.socket(zmq.PUSH)
        self.out.setsockopt(zmq.SNDHWM, QUEUE_HWM)
        self.out.setsockopt(zmq.LINGER, 0)
        self.out.bind(self.endpoints.frames_out)
        self.add_reader(self.tap.fd, self._on_tap)

    def _on_tap(self) -> None:
        fd = self.tap.fd
        send = self.out.send_multipart
        counters = self.counters
        # A TAP file descriptor, not ZeroMQ, so not drain(): bounded by a count instead.
        for _ in range(READS_PER_WAKEUP):
            items = tap.read_batch(fd, READ_BATCH)
            if not items:
                return
            counters.add("rx", len(items))
            counters.add("rx_bytes", sum(map(len, items)))
            try:
                send(encode_batch({}, items), zmq.NOBLOCK, copy=False)
            except zmq.Again:
                counters.drop(QUEUE_FULL, len(items))
            if len(items) < READ_BATCH:
                return

    def status(self) -> dict[str, Any]:
        return {"counters": self.counters.snapshot(), "tap": self.tap.ifname,
                "offloads": self.tap.offloads}

    def teardown(self) -> None:
        tap_handle = getattr(self, "tap", None)
        if tap_handle is not None:
            os.close(tap_handle.fd)


if __name__ == "__main__":
    sys.exit(main(Capture))
