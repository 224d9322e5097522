"""Which overlay one connection's traffic takes: the kernel fast datapath or the sleeve.

A sans-IO state machine per established connection, driven by gossip with ``time.monotonic``
(tests use a fake clock). Both ends run one; neither trusts the other's word alone:

- **Offered in the handshake**: each Hello says whether its sender runs fastdp (a peer that
  does not say so, e.g. an older version or ``--no-fastdp``, is sleeve forever). An encrypted
  connection, a router with ``--no-fastdp`` and a kernel without VXLAN never try: the sleeve
  is the only path that can carry them, and status says why.
- **Heartbeats**: every ``FAST_INTERVAL`` until the first acknowledgement, then every
  ``SLOW_INTERVAL``, each a full-size frame (the container MTU) with DF, VXLAN-encapsulated to
  the peer's UDP 6784, so it crosses the same port, the same size and the same receiving
  kernel device as data frames would (``weavenet.mesh.fdpwire``). A heartbeat that cannot even
  leave (EMSGSIZE: a local MTU below the container MTU's) is a failure with its own reason.
  Each round also sends a **small** heartbeat (``SMALL`` set in its sequence number): while
  the small ones are acknowledged and the full-size ones are not, something on the way drops
  big packets, and the reason says "path MTU too small" instead of "no fastdp heartbeat".
  A small heartbeat never proves the path (only the full-size one does).
- **Acknowledgements** come back over the TCP connection (``FastdpAck``). The path is
  **fastdp** while our latest heartbeats are acknowledged *and* the peer's heartbeats reach us,
  both within ``TIMEOUT``: requiring both directions keeps the two ends' choices the same, so
  neither sends by VXLAN to a peer that sends back by the sleeve.
- **Fallback**: when either stops for ``TIMEOUT`` (2.5 s; heartbeats keep going every second),
  the connection moves to the sleeve, which carries its traffic from then on, and probing
  continues at ``FAST_INTERVAL``. After ``HOLD_DOWN`` on the sleeve, a fresh acknowledgement
  and a fresh heartbeat from the peer bring it back (well within 15 s), so a flapping path
  does not flap the datapath.

``tick`` returns a :class:`Switch` when the path changes, or on the sleeve when the reason
changes (e.g. a cut first, then small heartbeats getting through: the path MTU); gossip logs
``overlay_switch`` and tells netconf and the forwarder. ``due`` says when to send the next
heartbeat.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

FAST_INTERVAL = 0.5
SLOW_INTERVAL = 1.0
TIMEOUT = 2.5
HOLD_DOWN = 3.0
SMALL = 1 << 63  # set in a small heartbeat's sequence number (the rest is the round's)
RECENT_ROUNDS = 8  # a small heartbeat's ack counts if it is of one of our last rounds


class Path(enum.Enum):
    FASTDP = "fastdp"
    SLEEVE = "sleeve"


# Why a connection is on the sleeve, in words (status and logs show these).
LOCAL_DISABLED = "--no-fastdp"
REMOTE_DISABLED = "peer does not offer fastdp (--no-fastdp or an older weavenet)"
ENCRYPTED = "encrypted"
NO_VXLAN = "kernel without VXLAN"
PROBING = "probing fastdp (no heartbeat acknowledged yet)"
NO_HEARTBEAT = "no fastdp heartbeat (UDP {port} blocked or lost)"
MTU_TOO_SMALL = "path MTU too small for the container MTU"
FASTDP_OK = "fastdp heartbeats acknowledged"


@dataclass(frozen=True)
class Switch:
    path: Path
    why: str


class Overlay:
    """One connection's overlay choice."""

    def __init__(self, now: float, *, disabled: str | None = None, port: int = 6784) -> None:
        """``disabled``: the reason this connection can never use fastdp (one of the constants
        above), or None to start probing at ``now``."""
        self.disabled = disabled
        self.port = port
        self.path = Path.SLEEVE
        self.reason = disabled or PROBING
        self.seq = 0
        self.sent: dict[int, float] = {}  # seq -> when, the unacknowledged recent ones
        self.last_ack: float | None = None
        self.last_small_ack: float | None = None
        self.last_heard: float | None = None
        self.next_send = now
        self.sleeve_since = now
        self.failed_send: str | None = None

    @property
    def probing(self) -> bool:
        return self.disabled is None

    # -- inputs ---------------------------------------------------------------------------------
    def due(self, now: float) -> int | None:
        """The sequence number of the heartbeat to send now, or None when none is due."""
        if not self.probing or now < self.next_send:
            return None
        self.seq += 1
        self.sent[self.seq] = now
        for old in [s for s, t in self.sent.items() if now - t > TIMEOUT]:
            del self.sent[old]
        interval = SLOW_INTERVAL if self.path is Path.FASTDP else FAST_INTERVAL
        self.next_send = now + interval
        return self.seq

    def send_failed(self, now: float, too_big: bool) -> None:
        """The heartbeat could not be sent (``too_big``: EMSGSIZE, the DF frame does not fit)."""
        self.failed_send = MTU_TOO_SMALL if too_big else None

    def acked(self, seq: int, now: float) -> None:
        """The peer says (over TCP) that heartbeat ``seq`` arrived through its VXLAN device."""
        if seq & SMALL:
            # a recent round's small one got through (its full-size twin's ack may have come
            # first and taken the round out of ``sent``: not a test here)
            if 0 <= self.seq - (seq & ~SMALL) < RECENT_ROUNDS:
                self.last_small_ack = now
            return
        if seq in self.sent:
            self.last_ack = now
            self.failed_send = None
            del self.sent[seq]

    def heard(self, now: float) -> None:
        """A heartbeat of the peer's arrived here through our VXLAN device."""
        self.last_heard = now

    def path_lost(self) -> None:
        """The connection's sleeve path just stopped answering heartbeats (UDP 6783): most
        likely the link is cut, so fastdp is not trusted until a heartbeat is acknowledged
        again; the next ``tick`` moves a fastdp link to the sleeve at once instead of after
        ``TIMEOUT`` (a cut link is routed around as fast with fastdp as without). The reason
        is then "no heartbeat" until the small heartbeats say otherwise."""
        self.last_ack = self.last_heard = self.last_small_ack = None

    # -- the decision ---------------------------------------------------------------------------
    def _fresh(self, when: float | None, now: float) -> bool:
        return when is not None and now - when <= TIMEOUT

    def tick(self, now: float) -> Switch | None:
        if not self.probing:
            return None
        both = self._fresh(self.last_ack, now) and self._fresh(self.last_heard, now)
        if self.path is Path.FASTDP and not both:
            self.path = Path.SLEEVE
            self.sleeve_since = now
            self.next_send = now  # probe fast from now on
            self.reason = self._silence(now)
            return Switch(Path.SLEEVE, self.reason)
        if self.path is Path.SLEEVE:
            if both and (self.last_ack is not None and self.last_ack > self.sleeve_since
                         and now - self.sleeve_since >= self._hold(now)):
                self.path = Path.FASTDP
                self.reason = FASTDP_OK
                return Switch(Path.FASTDP, self.reason)
            if not both and now - self.sleeve_since > TIMEOUT:
                # kept current while probing goes on; a change is reported (logged) except
                # the first, from PROBING, of a link that never was on fastdp
                why = self._silence(now)
                if why != self.reason:
                    first = self.reason == PROBING
                    self.reason = why
                    if not first:
                        return Switch(Path.SLEEVE, why)
        return None

    def _silence(self, now: float) -> str:
        """Why the full-size heartbeats do not get through, as far as we can tell."""
        if self.failed_send is not None:
            return self.failed_send
        if self._fresh(self.last_small_ack, now) and not self._fresh(self.last_ack, now):
            return MTU_TOO_SMALL  # small ones pass, big ones do not
        return NO_HEARTBEAT.format(port=self.port)

    def _hold(self, now: float) -> float:
        # the first promotion of a connection needs no hold-down: nothing flapped yet
        return 0.0 if self.reason == PROBING else HOLD_DOWN

    def status(self) -> dict[str, str]:
        return {"path": self.path.value, "reason": self.reason}
