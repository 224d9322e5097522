"""The TAP read's admission policy, on a fake clock: a refused batch is held and reading
pauses; the held batch goes first once the queue has room; nothing read is lost."""

from __future__ import annotations

from weavenet.dataplane.intake import Intake


def test_a_refusal_holds_the_batch_and_pauses_reading_until_it_is_sent():
    i = Intake()
    assert i.reading and i.held is None
    i.refused(["batch 1"], 10.0)
    assert not i.reading and i.held == ["batch 1"]
    i.refused(["batch 1"], 10.001)  # refused again on a retry: still one pause
    assert i.status(10.002) == {"reading": False, "pauses": 1, "paused_seconds": 0.002}
    i.sent_held(10.003)
    assert i.reading and i.held is None
    assert i.status(20.0) == {"reading": True, "pauses": 1, "paused_seconds": 0.003}
    i.refused(["batch 2"], 21.0)
    i.sent_held(21.5)
    assert i.status(22.0)["pauses"] == 2 and i.status(22.0)["paused_seconds"] == 0.503


def test_under_a_steady_overload_what_is_read_is_forwarded_and_the_consumer_never_starves():
    """A forwarder taking 500 batches/s, offered twice that: capture reads only what the
    queue takes (the rest is left to the kernel, unread), loses none of what it read, and
    the consumer always has a batch waiting."""
    i = Intake()
    now, step = 0.0, 0.00005
    # ZeroMQ: the limit is both ends' HWM (2 x 16); a full pipe takes messages again once
    # the reader has taken half of them
    queue, capacity, writable = 0, 32, True
    taken_per_s, offered_per_s = 500, 1000
    read = taken = starved = 0
    next_take = next_offer = 0.0
    while now < 10.0:
        if now >= next_take:
            next_take += 1 / taken_per_s
            if queue:
                queue -= 1
                taken += 1
            else:
                starved += 1
            writable = writable or queue <= capacity // 2
        if not i.reading and writable:  # the poller says the queue has room
            queue += 1
            i.sent_held(now)
        if now >= next_offer:
            next_offer += 1 / offered_per_s
            if i.reading:  # a batch is read only while reading
                read += 1
                if queue < capacity:
                    queue += 1
                else:
                    writable = False
                    i.refused(read, now)
        now += step
    assert taken >= 0.99 * taken_per_s * 10 - 1, taken
    assert starved <= 1  # only the very first take, before anything was read
    assert read == taken + queue + (0 if i.reading else 1)  # nothing read was lost
    assert read <= 0.55 * offered_per_s * 10  # the other half was never read
