"""The data-plane queues: batches of at most MAX_BATCH, a full queue is a counted drop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from weavenet.dataplane.batch import MAX_BATCH, decode_batch, encode_batch
from weavenet.dataplane.queues import QUEUE_HWM, connect_queue, send_batches
from weavenet.runtime.counters import Counters


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_items_go_in_batches_of_at_most_max_batch(ctx: zmq.Context) -> None:
    pull = ctx.socket(zmq.PULL)
    pull.bind("inproc://q")
    push = connect_queue(ctx, zmq.PUSH, "inproc://q")
    items = [bytes([i % 256]) * 20 for i in range(MAX_BATCH + 3)]
    counters = Counters()
    assert send_batches(push, items, lambda c: encode_batch({}, c), counters, "full") == len(items)
    got = [decode_batch(pull.recv_multipart())[1] for _ in range(2)]
    assert [len(g) for g in got] == [MAX_BATCH, 3]
    assert [bytes(f) for g in got for f in g] == items
    assert counters.drops == {}
    assert push.getsockopt(zmq.SNDHWM) == QUEUE_HWM and push.getsockopt(zmq.LINGER) == 0


def test_a_full_queue_drops_and_counts_never_waits(ctx: zmq.Context) -> None:
    push = ctx.socket(zmq.PUSH)  # no peer at all: nothing can be queued
    counters = Counters()
    assert send_batches(push, [b"x"] * 5, lambda c: encode_batch({}, c), counters, "full") == 0
    assert counters.drops == {"full": 5}
