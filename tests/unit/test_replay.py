"""ReplayWindow: each sequence number at most once, reordering tolerated up to the window width."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.crypto.replay import DEFAULT_WIDTH, MAX_SEQ, ReplayWindow


class ReferenceWindow:
    """The obvious (memory-hungry) model: remember every accepted number."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.accepted: set[int] = set()
        self.highest = -1

    def would_accept(self, seq: int) -> bool:
        in_range = 0 <= seq <= MAX_SEQ
        return in_range and seq not in self.accepted and seq > self.highest - self.width

    def check_and_update(self, seq: int) -> bool:
        if not self.would_accept(seq):
            return False
        self.accepted.add(seq)
        self.highest = max(self.highest, seq)
        return True


def test_first_packet_is_accepted_whatever_its_number() -> None:
    for first in (0, 1, 5000, MAX_SEQ):
        assert ReplayWindow().check_and_update(first)


def test_duplicate_is_rejected() -> None:
    window = ReplayWindow(64)
    assert window.check_and_update(10)
    assert not window.check_and_update(10)
    assert window.check_and_update(9)
    assert not window.check_and_update(9)


def test_last_slot_of_window_is_accepted_and_one_beyond_is_not() -> None:
    window = ReplayWindow(64)
    assert window.check_and_update(100)
    assert window.check_and_update(100 - 63)  # exactly width-1 behind: still inside
    assert not window.check_and_update(100 - 64)  # width behind: too old to tell
    assert not window.check_and_update(100 - 65)


def test_exactly_window_size_behind_is_rejected_even_if_never_seen() -> None:
    window = ReplayWindow(1024)
    assert window.check_and_update(5000)
    assert not window.check(5000 - 1024)
    assert window.check(5000 - 1023)


def test_reordered_packets_inside_the_window_are_accepted_once() -> None:
    window = ReplayWindow(64)
    for seq in (5, 3, 4, 1, 2, 0):
        assert window.check_and_update(seq)
    for seq in range(6):
        assert not window.check_and_update(seq)


def test_large_jump_forward_forgets_the_old_window_without_huge_memory() -> None:
    window = ReplayWindow(64)
    assert window.check_and_update(1)
    assert window.check_and_update(MAX_SEQ - 1)  # a shift of ~2**64 must not be attempted
    assert window.highest == MAX_SEQ - 1
    assert not window.check_and_update(1)
    assert window.check_and_update(MAX_SEQ - 2)
    assert not window.check_and_update(MAX_SEQ - 1)
    assert window.check_and_update(MAX_SEQ)


def test_jump_of_exactly_one_window_keeps_only_the_new_number() -> None:
    window = ReplayWindow(8)
    for seq in range(8):
        assert window.check_and_update(seq)
    assert window.check_and_update(7 + 8)
    assert not window.check_and_update(7)  # now 8 behind: outside
    assert window.check_and_update(8)  # 7 behind, never seen


def test_out_of_range_numbers_are_rejected() -> None:
    window = ReplayWindow()
    assert not window.check_and_update(-1)
    assert not window.check_and_update(MAX_SEQ + 1)
    assert window.highest == -1


def test_check_does_not_change_the_window() -> None:
    window = ReplayWindow(16)
    assert window.check(3)
    assert window.check(3)
    assert window.highest == -1
    assert window.check_and_update(3)
    assert not window.check(3)


def test_width_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(0)


def test_default_width_is_wide_enough_for_batched_reordering() -> None:
    assert ReplayWindow().width == DEFAULT_WIDTH >= 64


@settings(max_examples=300, deadline=None)
@given(
    width=st.sampled_from([1, 2, 8, 64, 1024]),
    start=st.integers(min_value=0, max_value=MAX_SEQ),
    offsets=st.lists(st.integers(min_value=-2100, max_value=2100), max_size=200),
)
def test_window_agrees_with_reference_model(width: int, start: int, offsets: list[int]) -> None:
    """Sequences clustered around a base (so duplicates and window edges are common)."""
    window, model = ReplayWindow(width), ReferenceWindow(width)
    for offset in offsets:
        seq = start + offset
        assert window.check(seq) == model.would_accept(seq)
        assert window.check_and_update(seq) == model.check_and_update(seq), seq
        assert window.highest == model.highest


@settings(max_examples=200, deadline=None)
@given(
    width=st.sampled_from([1, 64, 1024]),
    seqs=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=MAX_SEQ)
        ),
        max_size=100,
    ),
)
def test_random_sequences_agree_with_reference_model(width: int, seqs: list[int]) -> None:
    window, model = ReplayWindow(width), ReferenceWindow(width)
    for seq in seqs:
        assert window.check_and_update(seq) == model.check_and_update(seq), seq
