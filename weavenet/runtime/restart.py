"""When to restart a crashed actor, and when to give up on it.

A pure class with an injected clock and random source so that every branch (backoff growth,
jitter bounds, reset after a stable run, giving up) is unit-tested without waiting.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartSettings:
    # The first restart after a stable run is quick: one crash is the common case, and every
    # moment the actor is down costs traffic (a killed capture or forwarder stops the host's
    # cross-host frames). Backoff only starts with the second exit in a row.
    first: float = 0.05
    base: float = 0.5  # the delay after the second exit, seconds
    factor: float = 1.5
    cap: float = 10.0
    jitter: float = 0.2  # delay is multiplied by a factor in [1 - jitter, 1 + jitter]
    stable_after: float = 10.0  # a run this long resets the backoff
    max_restarts: int = 5  # more exits than this inside `window` marks the actor failed
    window: float = 60.0


class RestartPolicy:
    """Tracks one actor's exits. ``on_exit()`` returns the delay before the next start, or None."""

    def __init__(
        self,
        settings: RestartSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or RestartSettings()
        self._clock = clock
        self._rand = rand
        self._attempt = 0
        self._started_at: float | None = None
        self._exits: deque[float] = deque()
        self.restarts = 0
        self.failed = False

    def on_start(self) -> None:
        self._started_at = self._clock()

    def on_exit(self) -> float | None:
        s = self.settings
        now = self._clock()
        if self._started_at is not None and now - self._started_at >= s.stable_after:
            self._attempt = 0
            self._exits.clear()
        self._started_at = None
        self._exits.append(now)
        while self._exits and now - self._exits[0] > s.window:
            self._exits.popleft()
        if len(self._exits) > s.max_restarts:
            self.failed = True
            return None
        delay = (s.first if self._attempt == 0
                 else min(s.cap, s.base * s.factor ** (self._attempt - 1)))
        self._attempt += 1
        self.restarts += 1
        return delay * (1 - s.jitter + 2 * s.jitter * self._rand())
