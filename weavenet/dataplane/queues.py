"""The ZeroMQ queues between the data-plane actors: bounded, and never waited on.

A full queue (the actor behind it is not keeping up, or not there) drops what did not fit and
counts it, so a stalled capture or crypto actor never stalls the forwarder's loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import zmq

from weavenet.dataplane.batch import MAX_BATCH
from weavenet.runtime.counters import Counters

# Batches each end of a queue holds (a connection holds the sum of both ends'). Sized by
# latency, not a thousand: 2 x 16 batches of up to 64 small frames are ~40 ms of what the
# sleeve carries at 50 k frames/s, and bound what a flood can make the router hold; a queue
# that fills is what tells capture to read less (weavenet.dataplane.intake).
QUEUE_HWM = 16
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


def send_batches(sock: zmq.Socket, items: Sequence[Any], encode: Callable[[Sequence[Any]], list],
                 counters: Counters, full: str) -> int:
    """Send ``items`` in messages of up to MAX_BATCH (``encode`` makes a message's parts); a
    message the queue cannot take now is dropped, its items counted under ``full``. Returns how
    many items went."""
    send = sock.send_multipart
    sent = 0
    for i in range(0, len(items), MAX_BATCH):
        chunk = items[i : i + MAX_BATCH]
        try:
            send(encode(chunk), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            counters.drop(full, len(chunk))
            continue
        sent += len(chunk)
    return sent
