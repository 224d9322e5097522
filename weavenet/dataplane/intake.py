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
*held* (:attr:`Intake.held`, sent first when reading resumes), reading *pauses*, and what
arrives meanwhile waits in or overflows the TAP's kernel queue (counted by the kernel as the
TAP's transmit drops). Reading resumes when the pause is over and the queue has room
again. A pause that follows a resume too closely (the consumer is saturated, not momentarily
slow) doubles, up to ``max_pause``; one that follows a calm spell starts again from
``min_pause``. So under a steady overload capture reads in bursts that match what the
forwarder takes, the rest is shed by the kernel for free, and what is read is forwarded, with
the queue latency bounded by its limit (tens of batches).

Why the refused batch is held, not dropped: a TCP flow that loses one 64 KB super-frame at
capture loses ~45 segments and halves its window (iperf3 over the sleeve: ~8,000 retransmits
in 8 s when it was dropped, none held). Why the pause is timed rather than ended as soon as
the queue has room: reading as soon as there is room reads a few small frames per wakeup, and
the wakeups cost more than the frames (64-byte UDP: 45 k packets/s against 64 k with pauses,
which let the TAP gather full batches). A batch of big frames is worth its wakeup however few
they are, and there a pause only idles the forwarder (TCP: ~2.2 Gbit/s with timed pauses,
~2.35 without), so a refused batch of frames averaging at least ``GATHER_BELOW`` bytes
pauses only until the queue has room.

Sans-IO: times are passed in (``now``, seconds on a monotonic clock); the caller owns the TAP,
the queue and the timer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MIN_PAUSE = 0.0005  # seconds: a forwarder that was only busy for a moment
MAX_PAUSE = 0.008  # below the TAP queue's depth at line rate of small frames (1000 at ~125 kpps)
GATHER_BELOW = 4096  # bytes per frame, on average over the refused batch (see above)
CALM = 0.05  # seconds between a resume and the next refusal that count as "not saturated"


@dataclass
class Intake:
    min_pause: float = MIN_PAUSE
    max_pause: float = MAX_PAUSE
    calm: float = CALM
    paused_until: float | None = None  # set while reading is paused
    held: Any = field(default=None, init=False)  # the refused batch, to send before reading
    pause: float = field(init=False)
    last_resume: float = field(default=float("-inf"), init=False)
    paused_since: float = field(default=0.0, init=False)
    # what status shows
    pauses: int = field(default=0, init=False)
    paused_seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.pause = self.min_pause

    @property
    def reading(self) -> bool:
        return self.paused_until is None

    def refused(self, now: float, batch: Any = None, *, gather: bool = True) -> float:
        """The queue refused ``batch``: hold it and pause reading. Returns when reading may
        resume (the caller then sends :attr:`held` first). ``gather`` False (the batch was of
        big frames, e.g. TCP super-frames, whose batches are worth their wakeup however few)
        makes the pause end as soon as the queue has room."""
        if batch is not None:
            self.held = batch
        if self.paused_until is not None:
            return self.paused_until
        saturated = now - self.last_resume < self.calm
        self.pause = min(self.pause * 2, self.max_pause) if saturated else self.min_pause
        self.paused_until = now + (self.pause if gather else 0.0)
        self.paused_since = now
        self.pauses += 1
        return self.paused_until

    def may_resume(self, now: float, queue_has_room: bool) -> bool:
        """Whether to read again: the pause is over and the queue has room. When it returns
        True the caller reads again (and the pause is ended here)."""
        if self.paused_until is None:
            return True
        if now < self.paused_until or not queue_has_room:
            return False
        self.paused_seconds += now - self.paused_since
        self.paused_until = None
        self.last_resume = now
        return True

    def status(self, now: float) -> dict[str, float | int | bool]:
        paused = self.paused_seconds + (now - self.paused_since if not self.reading else 0.0)
        return {"reading": self.reading, "pauses": self.pauses,
                "paused_seconds": round(paused, 3), "pause_ms": round(self.pause * 1000, 2)}
