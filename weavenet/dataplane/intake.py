"""Admission at the TAP read: when the sleeve is offered more than it carries, read less.

What overload looked like (two routers in namespaces, 64-byte UDP offered well past what the
sleeve carries on a shared 2-core machine): every process of both routers and both ends of
the traffic compete for the same CPUs, and a frame capture reads has its whole cost ahead
of it (a ZeroMQ hop, the forwarder, sealing, UDP, and the same again on the receiving side).
Reading a frame only to drop it at a full queue spends capture's CPU on nothing, and
with queues a thousand batches deep the frames that did get through waited seconds behind
the others. Frames the kernel drops at the TAP's own queue cost no process anything.

So the policy: capture reads while the queue to the forwarder takes its batches. When the
queue refuses one (the forwarder, or crypto behind it, is not keeping up), that batch is
*held*, reading pauses, and what arrives meanwhile waits in or overflows the TAP's kernel
queue (counted by the kernel as the TAP's transmit drops). As soon as the queue has room again
(ZeroMQ says so once the forwarder has taken half of it) the held batch goes first and reading
resumes. So under a steady overload capture reads what the forwarder takes, the rest is shed
by the kernel for free, and what is read is forwarded, with the queue latency bounded by its
limit (tens of batches).

Why held and not dropped, and why no timed pause (both were tried, measured with iperf3 over
the sleeve): a TCP flow that loses one 64 KB super-frame at capture loses ~45 segments and
halves its window (8,000 retransmits in 8 s), and a pause that outlasts the queue's draining
leaves the forwarder idle; holding and resuming on room gave no retransmits and ~10 % more.

Sans-IO: times are passed in (``now``, seconds on a monotonic clock); the caller owns the TAP,
the queue and the poller, and sends :attr:`Intake.held` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Intake:
    held: Any = field(default=None, init=False)  # the refused batch, to send before reading
    paused_since: float | None = field(default=None, init=False)  # None while reading
    # what status shows
    pauses: int = field(default=0, init=False)
    paused_seconds: float = field(default=0.0, init=False)

    @property
    def reading(self) -> bool:
        return self.paused_since is None

    def refused(self, batch: Any, now: float) -> None:
        """The queue refused ``batch``: hold it and pause reading."""
        self.held = batch
        if self.paused_since is None:
            self.paused_since = now
            self.pauses += 1

    def sent_held(self, now: float) -> None:
        """The held batch went (the queue had room again): read again."""
        self.held = None
        if self.paused_since is not None:
            self.paused_seconds += now - self.paused_since
            self.paused_since = None

    def status(self, now: float) -> dict[str, float | int | bool]:
        paused = self.paused_seconds + (now - self.paused_since if not self.reading else 0.0)
        return {"reading": self.reading, "pauses": self.pauses,
                "paused_seconds": round(paused, 3)}
