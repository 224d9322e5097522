"""The capture actor: the router's reading port on the weave bridge.

It attaches a queue of the persistent multi-queue TAP ``weave-tap`` (created by netconf) with
virtio-net headers and TSO/checksum offloads, reads frames in batches and PUSHes them to the
forwarder. It never blocks: a full queue pauses reading (below). Everything it handles is
"virtio-net header + Ethernet frame". Its queue is the TAP's only attached one, so the kernel
steers every frame the bridge sends to the TAP here.

It writes nothing: frames for our bridge (received from peers, opened by crypto, replies the
forwarder makes) are written by the forwarder itself through a detached queue of the same TAP
(see the forwarder's docstring); they no longer make a ZeroMQ hop back through capture, and
they keep flowing while capture restarts.

Admission (``weavenet.dataplane.intake``): when the queue to the forwarder refuses a batch,
the batch is held and reading the TAP pauses until the pause is over and the queue has room
again (the held batch goes first), so an overload is shed by the TAP's kernel queue instead
of being read and dropped here. Drops by reason: ``tap_backlog`` (the kernel's count of
frames its full TAP queue dropped, since this capture started). Status shows the intake's
pauses.

Socket (bound here; batches as in :mod:`weavenet.dataplane.batch`):

* PUSH ``Endpoints.frames_out``: frames read from the TAP, to the forwarder.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from weavenet.dataplane.batch import encode_batch, tune_malloc
from weavenet.dataplane.intake import GATHER_BELOW, Intake
from weavenet.dataplane.queues import QUEUE_HWM
from weavenet.host import tap
from weavenet.host.tap import ROUTER_PORT
from weavenet.runtime.actor import Actor, main
from weavenet.runtime.counters import Counters

READ_BATCH = 64  # frames per read batch (one ZeroMQ message)
# ... and bytes: 64 super-frames make a 4 MB message, and the queue holds 32 messages
READ_BATCH_BYTES = 256 << 10
READS_PER_WAKEUP = 4  # batches read before going back to the poller
TAP_WAIT = 5.0  # seconds to wait for netconf's TAP before giving up (the supervisor restarts us)

# drop reasons
TAP_BACKLOG = "tap_backlog"  # not read: the kernel dropped them at the TAP's full queue


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


def tap_tx_dropped(ifname: str) -> int | None:
    """Frames the kernel dropped on their way to us (the TAP's queue was full): its transmit
    drops in /proc/net/dev, which is our own namespace's (sysfs may be another's)."""
    try:
        for line in Path("/proc/self/net/dev").read_text().splitlines():
            name, _, fields = line.partition(":")
            if name.strip() == ifname:
                return int(fields.split()[11])  # rx: 8 fields, then tx bytes packets errs drop
    except (OSError, ValueError, IndexError):
        pass
    return None


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
        self.intake = Intake()
        self.tap_dropped_at_start = tap_tx_dropped(self.tap.ifname)
        self.add_reader(self.tap.fd, self._on_tap)

    def _on_tap(self) -> None:
        fd = self.tap.fd
        send = self.out.send_multipart
        counters = self.counters
        # A TAP file descriptor, not ZeroMQ, so not drain(): bounded by a count instead.
        for _ in range(READS_PER_WAKEUP):
            items = tap.read_batch(fd, READ_BATCH, max_bytes=READ_BATCH_BYTES)
            if not items:
                return
            nbytes = sum(map(len, items))
            counters.add("rx", len(items))
            counters.add("rx_bytes", nbytes)
            batch = encode_batch({}, items)
            try:
                send(batch, zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._pause(batch, gather=nbytes < GATHER_BELOW * len(items))
                return
            if len(items) < READ_BATCH:
                return

    def _pause(self, batch: list, gather: bool = True) -> None:
        """The forwarder's queue is full: hold ``batch`` and stop reading the TAP (the kernel
        queues or drops meanwhile) until the intake's pause is over and the queue has room."""
        now = time.monotonic()
        resume_at = self.intake.refused(now, batch, gather=gather)
        self.remove_reader(self.tap.fd)
        self.after(max(0.0, resume_at - now), self._pause_over)

    def _pause_over(self) -> None:
        if self._resume():
            return
        self.add_writer(self.out, self._on_room)  # still full: resume when it has room

    def _on_room(self) -> None:
        if self._resume():
            self.remove_writer(self.out)

    def _resume(self) -> bool:
        room = bool(self.out.getsockopt(zmq.EVENTS) & zmq.POLLOUT)
        if not self.intake.may_resume(time.monotonic(), room):
            return False
        held, self.intake.held = self.intake.held, None
        if held is not None:
            try:
                self.out.send_multipart(held, zmq.NOBLOCK, copy=False)
            except zmq.Again:  # room for less than it after all: pause again
                self._pause(held)
                return True  # paused anew, with its own timer: this wait is over
        self.add_reader(self.tap.fd, self._on_tap)
        return True

    def status(self) -> dict[str, Any]:
        counters = self.counters.snapshot()
        now_dropped = tap_tx_dropped(self.tap.ifname)
        if now_dropped is not None and self.tap_dropped_at_start is not None:
            backlog = now_dropped - self.tap_dropped_at_start
            if backlog > 0:
                counters["drops"][TAP_BACKLOG] = backlog  # type: ignore[index]
                counters["dropped"] += backlog  # type: ignore[operator]
        return {"counters": counters, "tap": self.tap.ifname, "offloads": self.tap.offloads,
                "intake": self.intake.status(time.monotonic())}

    def teardown(self) -> None:
        tap_handle = getattr(self, "tap", None)
        if tap_handle is not None:
            os.close(tap_handle.fd)


if __name__ == "__main__":
    sys.exit(main(Capture))
