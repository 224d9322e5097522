"""The data-plane queues: batches of at most MAX_BATCH; a full queue's refusals are held in
order until it has room, up to a limit past which they are counted drops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from weavenet.dataplane.batch import MAX_BATCH, decode_batch, encode_batch
from weavenet.dataplane.queues import QUEUE_HWM, Backlog, batches, connect_queue
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
    backlog = Backlog(push, Counters(), "full")
    for chunk in batches(items):
        backlog.send(encode_batch({}, chunk), len(chunk))
    assert len(backlog) == 0
    got = [decode_batch(pull.recv_multipart())[1] for _ in range(2)]
    assert [len(g) for g in got] == [MAX_BATCH, 3]
    assert [bytes(f) for g in got for f in g] == items
    assert push.getsockopt(zmq.SNDHWM) == QUEUE_HWM and push.getsockopt(zmq.LINGER) == 0


def test_a_full_queue_holds_in_order_and_flushes_when_it_has_room(ctx: zmq.Context) -> None:
    push = ctx.socket(zmq.PUSH)  # not connected yet: nothing can go
    counters = Counters()
    backlog = Backlog(push, counters, "full", limit=3)
    for i in range(5):
        backlog.send(encode_batch({}, [bytes([i]) * 10]), 1)
    assert len(backlog) == 3 and counters.drops == {"full": 2}  # past the limit: dropped
    assert not backlog.flush()  # still no room
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 2000)
    pull.bind("inproc://late")
    push.connect("inproc://late")
    assert backlog.flush() and len(backlog) == 0
    backlog.send(encode_batch({}, [b"\x09" * 10]), 1)  # nothing held: goes at once
    got = [bytes(decode_batch(pull.recv_multipart())[1][0])[:1] for _ in range(4)]
    assert got == [b"\x00", b"\x01", b"\x02", b"\x09"]


def test_dropping_the_backlog_counts_what_it_held(ctx: zmq.Context) -> None:
    push = ctx.socket(zmq.PUSH)
    counters = Counters()
    backlog = Backlog(push, counters, "full")
    backlog.send(encode_batch({}, [b"x"] * 4), 4)
    backlog.send(encode_batch({}, [b"y"] * 2), 2)
    backlog.drop()
    assert len(backlog) == 0 and counters.drops == {"full": 6}


def test_batches_are_bounded_in_bytes_too_but_never_empty() -> None:
    items = [b"a" * 100, b"b" * 100, b"c" * 300, b"d" * 50, b"e" * 60]
    assert [len(c) for c in batches(items, max_bytes=200)] == [2, 1, 2]
    assert [len(c) for c in batches([b"x" * 1000, b"y"], max_bytes=10)] == [1, 1]
    assert list(batches([], max_bytes=10)) == []
