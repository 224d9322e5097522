"""The capture actor: the router's port on the weave bridge.

It opens the persistent TAP ``weave-tap`` (created by netconf) with virtio-net headers and
TSO/checksum offloads, reads frames in batches and PUSHes them to the forwarder, and writes
the frames the forwarder PUSHes back. It never blocks: a full queue or a refused write is a
counted drop. Everything it handles is "virtio-net header + Ethernet frame".

Admission (``weavenet.dataplane.intake``): when the queue to the forwarder refuses a batch,
reading the TAP pauses until the pause is over and the queue has room again, so an overload is
shed by the TAP's kernel queue instead of being read and dropped here. Drops by reason:
``queue_full`` (read, then refused by the forwarder's queue), ``tap_backlog`` (the kernel's
count of frames its full TAP queue dropped, since this capture started), ``write_refused``,
``bad_batch``. Status shows the intake's pauses.

Sockets (both bound here; batches as in :mod:`weavenet.dataplane.batch`):

* PUSH ``Endpoints.frames_out``: frames read from the TAP, to the forwarder.
* PULL ``Endpoints.frames_in``: frames from the forwarder, written to the TAP.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from weavenet.dataplane.batch import BatchError, decode_batch, encode_batch, tune_malloc
from weavenet.dataplane.intake import Intake
from weavenet.dataplane.queues import QUEUE_HWM
from weavenet.host import tap
from weavenet.host.tap import ROUTER_PORT
from weavenet.runtime.actor import Actor, drain, main
from weavenet.runtime.counters import Counters

READ_BATCH = 64  # frames per read batch (one ZeroMQ message)
READS_PER_WAKEUP = 4  # batches read before going back to the poller (lets injection interleave)
INJECT_BATCHES_PER_WAKEUP = 64
TAP_WAIT = 5.0  # seconds to wait for netconf's TAP before giving up (the supervisor restarts us)

# drop reasons
QUEUE_FULL = "queue_full"  # forwarder not keeping up (or not there): frames read, not passed on
TAP_BACKLOG = "tap_backlog"  # not read: the kernel dropped them at the TAP's full queue
WRITE_REFUSED = "write_refused"  # the kernel refused an injected frame
BAD_BATCH = "bad_batch"


class TapMissing(RuntimeError):
    pass


def wait_for_tap(name: str, timeout: float) -> tap.TapHandle:
    """Attach to the existing TAP ``name``; never create one (it would not be on the bridge)."""
    deadline = time.monotonic() + timeout
    reason = "not found"
    while True:
        try:
            # SIOCGIFINDEX on a socket of our namespace (sysfs may show another namespace).
            socket.if_nametoindex(name)
            return tap.open_tap_handle(name)
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
        self.inj = self.ctx.socket(zmq.PULL)
        self.inj.setsockopt(zmq.RCVHWM, QUEUE_HWM)
        self.inj.setsockopt(zmq.LINGER, 0)
        self.inj.bind(self.endpoints.frames_in)
        self.intake = Intake()
        self.tap_dropped_at_start = tap_tx_dropped(self.tap.ifname)
        self.add_reader(self.tap.fd, self._on_tap)
        self.add_reader(self.inj, self._on_inject)

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
                self._pause()
                return
            if len(items) < READ_BATCH:
                return

    def _pause(self) -> None:
        """The forwarder's queue is full: stop reading the TAP (the kernel queues or drops
        meanwhile) until the intake's pause is over and the queue has room."""
        now = time.monotonic()
        resume_at = self.intake.refused(now)
        self.remove_reader(self.tap.fd)
        self.after(max(0.0, resume_at - now), self._pause_over)

    def _pause_over(self) -> None:
        if self._resume():
            return
        self.add_writer(self.out, self._on_room)  # still full: resume when it has room

    def _on_room(self) -> None:
        if self._resume():
            self.remove_reader(self.out)

    def _resume(self) -> bool:
        room = bool(self.out.getsockopt(zmq.EVENTS) & zmq.POLLOUT)
        if not self.intake.may_resume(time.monotonic(), room):
            return False
        self.add_reader(self.tap.fd, self._on_tap)
        return True

    def _on_inject(self) -> None:
        fd = self.tap.fd
        write = tap.write_frame
        counters = self.counters
        for parts in drain(self.inj, INJECT_BATCHES_PER_WAKEUP):
            try:
                _, frames = decode_batch(parts)
            except BatchError:
                counters.drop(BAD_BATCH)
                continue
            written = nbytes = 0
            for frame in frames:
                try:
                    ok = write(fd, frame)
                except OSError:
                    ok = False
                if ok:
                    written += 1
                    nbytes += len(frame)
                else:
                    counters.drop(WRITE_REFUSED)
            counters.add("tx", written)
            counters.add("tx_bytes", nbytes)

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
