"""The ZeroMQ queues between the data-plane actors: bounded, and never waited on.

A full queue (the actor behind it is not keeping up, or not there) never blocks the sender's
loop: the sender holds the refused message (:class:`Backlog`) and stops reading its own
inputs until the queue has room, so the overload backs up into kernel buffers (the TAP's
queue, the UDP socket's) instead of being read and dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import zmq

from weavenet.dataplane.batch import MAX_BATCH
from weavenet.runtime.counters import Counters

# Batches each end of a queue holds (a connection holds the sum of both ends'). Sized by
# latency, not a thousand: 2 x 16 batches of up to 64 small frames are ~40 ms of what the
# sleeve carries at 50 k frames/s, and bound what a flood can make the router hold; a queue
# that fills is what tells capture to read less (weavenet.dataplane.intake).
QUEUE_HWM = 16
# Bytes per message: a queue is bounded in messages, and a message of 64 KB super-frames
# (up to a wakeup's MB) times QUEUE_HWM at both ends of both directions held ~20 MB more in
# the encrypted receiving router under TCP (crypto +9, forwarder +12 MB over idle; with
# this, and 8 replies per forwarder wakeup, +3 and +5 to +8).
MESSAGE_BYTES = 256 << 10
RECONNECT_IVL_MS = 20  # redial an ipc peer that went away (a restarting actor) this often


def connect_queue(ctx: zmq.Context, kind: int, endpoint: str) -> zmq.Socket:
    """A socket of ``kind`` connected to ``endpoint``, holding at most QUEUE_HWM batches each
    way and dropping them at close."""
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.SNDHWM, QUEUE_HWM)
    sock.setsockopt(zmq.RCVHWM, QUEUE_HWM)
    sock.setsockopt(zmq.LINGER, 0)
    # ZeroMQ redials a restarted peer every 100 ms by default; frames wait for it
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.connect(endpoint)
    return sock


def batches(items: Sequence[Any], max_bytes: int = MESSAGE_BYTES) -> Iterator[Sequence[Any]]:
    """``items`` (buffers) in chunks of at most MAX_BATCH items and, past the first item, at
    most ``max_bytes``: one message each."""
    if 0 < len(items) <= MAX_BATCH and sum(map(len, items)) <= max_bytes:
        yield items  # the usual case, without a Python step per item
        return
    start, size = 0, 0
    for i, item in enumerate(items):
        n = len(item)
        if i > start and (i - start >= MAX_BATCH or size + n > max_bytes):
            yield items[start:i]
            start, size = i, 0
        size += n
    if start < len(items):
        yield items[start:]


class Backlog:
    """Messages a full queue refused, kept in order until it has room, for a sender that
    pauses its own inputs meanwhile (so the kernel's buffers behind them hold the rest).

    Dropping them instead costs TCP over the sleeve dearly: a lost 64 KB super-frame is ~45
    lost segments and a halved window (the forwarder's queue to crypto dropped ~270 batches,
    7,600 retransmits, in 8 s of encrypted iperf3). At most ``limit`` messages are held; past
    that, or on :meth:`drop`, they are dropped and their items counted under ``full``.
    """

    def __init__(self, sock: zmq.Socket, counters: Counters, full: str,
                 limit: int = QUEUE_HWM) -> None:
        self.sock = sock
        self.counters = counters
        self.full = full
        self.limit = limit
        self._held: deque[tuple[list, int]] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def send(self, parts: list, count: int) -> None:
        """Send a message of ``count`` items now, or hold it (behind any held before)."""
        if not self._held:
            try:
                self.sock.send_multipart(parts, zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
        if len(self._held) >= self.limit:
            self.counters.drop(self.full, count)
            return
        self._held.append((parts, count))

    def flush(self) -> bool:
        """Send what is held while the queue takes it; True once nothing is held."""
        held = self._held
        while held:
            try:
                self.sock.send_multipart(held[0][0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return False
            held.popleft()
        return True

    def drop(self) -> None:
        """Give up what is held (the queue's reader is gone), counted."""
        for _, count in self._held:
            self.counters.drop(self.full, count)
        self._held.clear()
