"""Strangers' connections: a per-source limit before the handshake, and rate-limited log lines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from weavenet.mesh.admission import (
    TOO_MANY_CONNECTIONS,
    TOO_MANY_FROM_SOURCE,
    Admission,
    RefusalLog,
)


def test_the_ninth_handshaking_connection_from_one_source_is_refused_but_others_get_in() -> None:
    adm = Admission(["198.18.0.9"] * 7, total=7, max_total=512)
    assert adm.admit("198.18.0.9") is None
    assert adm.admit("198.18.0.9") == TOO_MANY_FROM_SOURCE
    assert adm.admit("198.18.0.2") is None


def test_the_overall_limit_refuses_everyone() -> None:
    adm = Admission([], total=511, max_total=512)
    assert adm.admit("198.18.0.2") is None
    assert adm.admit("198.18.0.3") == TOO_MANY_CONNECTIONS


def test_a_flood_of_refusals_from_one_source_writes_a_few_lines_and_counts_the_rest() -> None:
    log = RefusalLog(burst=3, interval=10.0)
    written = [log.allow("198.18.0.9", 100.0 + i * 0.01) for i in range(200)]
    assert written[:3] == [0, 0, 0] and written[3:] == [None] * 197
    assert log.suppressed == 197
    assert log.allow("198.18.0.2", 102.0) == 0  # another source is not affected
    assert log.allow("198.18.0.9", 112.0) == 197  # one line later, saying what was held back
    assert log.allow("198.18.0.9", 112.1) is None


@given(st.lists(st.tuples(st.integers(0, 2000), st.floats(0, 1.0)), max_size=300))
def test_lines_per_source_never_exceed_the_burst_plus_one_per_interval(events) -> None:
    log = RefusalLog(burst=2, interval=10.0, max_sources=4096)
    now, lines = 0.0, 0
    for source, step in events:
        now += step
        if log.allow(str(source % 3), now) is not None:
            lines += 1
    assert lines <= 3 * (2 + now / 10.0) + 1e-9
    assert lines + log.suppressed == len(events)


def test_tracked_sources_are_bounded() -> None:
    log = RefusalLog(max_sources=16)
    for i in range(1000):
        log.allow(f"10.0.{i >> 8}.{i & 255}", 0.0)
    assert len(log._sources) == 16
