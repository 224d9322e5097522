"""The TAP read's admission policy, on a fake clock: a refused batch is held and reading
pauses; reading resumes when the pause is over and the queue has room, with longer pauses
while the consumer stays saturated."""

from __future__ import annotations

from weavenet.dataplane.intake import Intake


def test_a_refusal_pauses_reading_until_the_pause_is_over_and_the_queue_has_room():
    i = Intake(min_pause=0.001, max_pause=0.008, calm=0.05)
    assert i.reading and i.may_resume(0.0, queue_has_room=False)  # not paused: read
    assert i.refused(10.0, ["batch"]) == 10.001
    assert not i.reading and i.held == ["batch"]  # held, for the caller to send first
    assert i.refused(10.0005) == 10.001  # a second refusal in the same pause changes nothing
    assert not i.may_resume(10.0009, queue_has_room=True)  # too early
    assert not i.may_resume(10.002, queue_has_room=False)  # queue still full
    assert i.may_resume(10.003, queue_has_room=True)
    assert i.reading
    st = i.status(10.003)
    assert st["pauses"] == 1 and abs(st["paused_seconds"] - 0.003) < 1e-9


def test_pauses_double_while_saturated_and_start_again_after_a_calm_spell():
    i = Intake(min_pause=0.001, max_pause=0.008, calm=0.05)
    now, pauses = 0.0, []
    for _ in range(6):  # refused right after every resume: the consumer is saturated
        until = i.refused(now)
        pauses.append(round(until - now, 6))
        now = until
        assert i.may_resume(now, queue_has_room=True)
        now += 0.001
    assert pauses == [0.001, 0.002, 0.004, 0.008, 0.008, 0.008]  # bounded by max_pause
    now += 1.0  # a calm second
    assert round(i.refused(now) - now, 6) == 0.001


def test_what_a_steady_overload_reads_matches_what_the_consumer_takes():
    """A forwarder taking 500 batches/s (32 k frames/s in batches of 64), offered twice that:
    capture reads in bursts between pauses, the consumer is never starved, the batches
    refused (and held) stay a small share, and none of what was read is lost (the rest is
    shed by the kernel, unread)."""
    i = Intake()
    now, step = 0.0, 0.00005
    # ZeroMQ: the limit is both ends' HWM (2 x 16); a full pipe takes messages again once
    # the reader has taken half of them
    queue, capacity = 0, 32
    taken_per_s, offered_per_s = 500, 1000
    read = refused = taken = 0
    next_take = next_offer = 0.0
    while now < 10.0:
        if now >= next_take:
            next_take += 1 / taken_per_s
            if queue:
                queue -= 1
                taken += 1
        if now >= next_offer:
            next_offer += 1 / offered_per_s
            if i.may_resume(now, queue_has_room=queue <= capacity // 2):
                if i.held is not None:  # the refused batch goes first
                    queue += 1
                    i.held = None
                read += 1
                if queue < capacity:
                    queue += 1
                else:
                    refused += 1
                    i.refused(now, read)
        now += step
    assert taken >= 0.95 * taken_per_s * 10  # the consumer is never starved
    assert refused <= 0.1 * read, (read, refused)
    assert read == taken + queue + (i.held is not None)  # held, not lost


def test_a_batch_of_big_frames_pauses_only_until_the_queue_has_room():
    """Super-frames are worth a wakeup however few: no timed pause, only the queue's room;
    the saturation state still follows, for the next batch of small frames."""
    i = Intake(min_pause=0.001, max_pause=0.008, calm=0.05)
    assert i.refused(10.0, ["big"], gather=False) == 10.0
    assert not i.may_resume(10.0, queue_has_room=False)
    assert i.may_resume(10.0001, queue_has_room=True) and i.held == ["big"]
    i.held = None
    # a small-frame refusal right after: saturated, so the pause has doubled
    assert round(i.refused(10.0002, ["small"]) - 10.0002, 6) == 0.002
