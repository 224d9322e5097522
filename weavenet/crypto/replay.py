"""Sliding replay window for sealed UDP datagrams.

Datagrams on the sleeve may be lost or reordered by the underlay, so the receiver cannot demand
strictly increasing sequence numbers the way the TCP stream does. Instead it remembers the highest
sequence number it has accepted and, in a bitmap, which of the `width` numbers up to and including
it it has already seen. A number is accepted once if it is ahead of the highest, or inside the
window and not yet seen; anything older than the window is rejected, because we can no longer tell
whether it was seen (the conservative answer for a replay defence).

The window is only updated for datagrams that have already been authenticated, otherwise a forger
could slide it forward with a huge sequence number and make every genuine datagram look too old;
hence the split into `check` (no side effects, used as a cheap pre-filter) and `check_and_update`.
"""

from __future__ import annotations

DEFAULT_WIDTH = 1024
MAX_SEQ = 2**64 - 1


class ReplayWindow:
    """Accept each sequence number at most once, tolerating reordering up to `width` behind."""

    __slots__ = ("_width", "_mask", "_highest", "_seen")

    def __init__(self, width: int = DEFAULT_WIDTH) -> None:
        if width < 1:
            raise ValueError("replay window width must be at least 1")
        self._width = width
        self._mask = (1 << width) - 1
        self._highest = -1  # nothing accepted yet: every first number is ahead
        # bit i set <=> (highest - i) has been accepted; a Python int is a cheap bitset
        self._seen = 0

    @property
    def width(self) -> int:
        return self._width

    @property
    def highest(self) -> int:
        """Highest accepted sequence number, -1 before the first one."""
        return self._highest

    def check(self, seq: int) -> bool:
        """Would `seq` be accepted now? Does not change the window."""
        if not 0 <= seq <= MAX_SEQ:
            return False
        if seq > self._highest:
            return True
        behind = self._highest - seq
        if behind >= self._width:
            return False
        return not (self._seen >> behind) & 1

    def check_and_update(self, seq: int) -> bool:
        """Accept `seq` (and remember it) if it is fresh; return False for a replay or too old."""
        if not self.check(seq):
            return False
        if seq > self._highest:
            ahead = seq - self._highest
            # a jump of a whole window or more forgets everything; never shift by `ahead` itself,
            # which may be ~2**64 and would allocate an enormous integer
            self._seen = ((self._seen << ahead) | 1) & self._mask if ahead < self._width else 1
            self._highest = seq
        else:
            self._seen |= 1 << (self._highest - seq)
        return True
