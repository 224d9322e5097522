"""Path MTU of one sleeve connection, sans-IO, and what to do with frames that exceed it.

Sizes here are UDP payload sizes (what :func:`weavenet.dataplane.sleeve.pack_datagram` calls
``max_size``). Two facts are tracked per connection:

* **frag test**: as weave did, a 60001-byte datagram is sent *without* DF; if it arrives
  the kernel may fragment for us and super-frames travel whole (effective size 65507).
  Repeated every ``frag_test_interval`` seconds, since paths change.
* **PMTU**: DF-set probes search the largest datagram that arrives, between ``floor`` and
  ``ceiling`` (the underlay link MTU minus IP/UDP headers): first the ceiling (most paths
  pass), then a binary search. A probe is lost after ``probe_retries`` timeouts. The kernel
  saying EMSGSIZE lowers the bound at once. Re-probed upwards every ``reprobe_interval``.

Until the first search settles the estimate is the ceiling: briefly too optimistic costs a few
lost datagrams, while an ICMP "fragmentation needed" with a too-small MTU would pin the
container's TCP to it for minutes. Every later search (the periodic upward re-probe, or a new
search after a failed frag test) keeps frames at the last size known to work (``known_good``)
until a probe proves a bigger one or a failure proves a smaller bound: only the probes go
bigger, so a re-probe never costs the frames a lost datagram.

The forwarder calls :meth:`PathMtu.poll` (through
:meth:`weavenet.dataplane.path.Path.due_probes`) whenever :meth:`PathMtu.next_deadline` passes,
sends the returned probes with :func:`weavenet.dataplane.sleeve.build_control` (PMTU probes with
DF set, the frag test without), and feeds acks back through :meth:`PathMtu.on_ack`.
"""

from __future__ import annotations

from typing import NamedTuple

from weavenet.dataplane.frame import (
    ETHERTYPE_IPV4,
    VNET_GSO_NONE,
    VNET_GSO_TCPV4,
    VNET_GSO_TCPV6,
    VNET_HDR_LEN,
    Buffer,
    FrameError,
    ethertype,
    gso_type,
    ipv4_header,
)
from weavenet.dataplane.segment import fragment_ipv4, icmp_frag_needed, segment_tcp
from weavenet.dataplane.sleeve import (
    FRAG_TEST,
    FRAG_TEST_ACK,
    FRAG_TEST_SIZE,
    FRAME_OVERHEAD,
    FRAMES_HEADER_LEN,
    MAX_DATAGRAM,
    PMTU_ACK,
    PMTU_PROBE,
)

DEFAULT_FLOOR = 548  # 576-byte IPv4 minimum less IP and UDP headers
SEARCH_STEP = 8  # stop the binary search when the bounds are this close


class Probe(NamedTuple):
    kind: int  # PMTU_PROBE (send with DF) or FRAG_TEST (send without DF)
    token: int
    size: int


class _Pending(NamedTuple):
    size: int
    deadline: float
    tries: int


class PathMtu:
    def __init__(
        self,
        ceiling: int,
        *,
        floor: int = DEFAULT_FLOOR,
        probe_timeout: float = 0.5,
        probe_retries: int = 3,
        frag_test_interval: float = 30.0,
        reprobe_interval: float = 600.0,
    ) -> None:
        if not 0 < floor <= ceiling <= MAX_DATAGRAM:
            raise ValueError(f"need 0 < floor {floor} <= ceiling {ceiling} <= {MAX_DATAGRAM}")
        self.ceiling = ceiling
        self.floor = floor
        self.probe_timeout = probe_timeout
        self.probe_retries = probe_retries
        self.frag_test_interval = frag_test_interval
        self.reprobe_interval = reprobe_interval
        self.lo = floor  # largest size known to arrive
        self.hi = ceiling  # largest size not yet known to fail
        self.settled = False
        self.known_good: int | None = None  # what the last settled search found
        self.frag_ok: bool | None = None
        self._token = 0
        self._probe: tuple[int, _Pending] | None = None
        self._frag: tuple[int, _Pending] | None = None
        self._next_search = 0.0
        self._next_frag_test = float("-inf")  # due at the first poll
        self._check_settled(0.0)

    # --- what the forwarder uses ----------------------------------------------------------------

    @property
    def pmtu(self) -> int:
        """Largest DF datagram believed to arrive (optimistic only until the first search
        settles; after that never above what a probe has proved, see the module docstring)."""
        if self.settled:
            return self.lo
        if self.known_good is None:
            return max(self.lo, self.hi)
        return max(self.lo, min(self.known_good, self.hi))

    @property
    def max_datagram(self) -> int:
        """Largest datagram to build for frames: kernel fragmentation if the test passed."""
        return MAX_DATAGRAM if self.frag_ok else self.pmtu

    # --- events -------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Probe]:
        """Probes to send now (new ones and retries); also times out lost ones."""
        out: list[Probe] = []
        if self._frag is not None and now >= self._frag[1].deadline:
            token, pend = self._frag
            if pend.tries >= self.probe_retries:
                self.frag_ok = False
                self._frag = None
                self._next_frag_test = now + self.frag_test_interval
                # A failed frag test is our only sign that a path shrank under us: what the
                # last search proved may no longer hold, so search again from the floor.
                if self.settled and self.lo > self.floor:
                    self.lo, self.hi, self.settled = self.floor, self.ceiling, False
                    self._probe = None
            else:
                self._frag = (
                    token,
                    pend._replace(deadline=now + self.probe_timeout, tries=pend.tries + 1),
                )
                out.append(Probe(FRAG_TEST, token, FRAG_TEST_SIZE))
        if self._frag is None and now >= self._next_frag_test:
            token = self._new_token()
            self._frag = (token, _Pending(FRAG_TEST_SIZE, now + self.probe_timeout, 1))
            out.append(Probe(FRAG_TEST, token, FRAG_TEST_SIZE))

        if self._probe is not None and now >= self._probe[1].deadline:
            token, pend = self._probe
            if pend.tries >= self.probe_retries:
                self._probe = None
                self.hi = min(self.hi, pend.size - 1)
                self._check_settled(now)
            else:
                self._probe = (
                    token,
                    pend._replace(deadline=now + self.probe_timeout, tries=pend.tries + 1),
                )
                out.append(Probe(PMTU_PROBE, token, pend.size))
        if self._probe is None and not self.settled and self.hi > self.lo:
            size = self.hi if self.hi == self.ceiling else (self.lo + self.hi + 1) // 2
            token = self._new_token()
            self._probe = (token, _Pending(size, now + self.probe_timeout, 1))
            out.append(Probe(PMTU_PROBE, token, size))
        elif self._probe is None and self.settled and now >= self._next_search:
            # periodic upward re-probe: the path may have grown since
            self.hi = self.ceiling
            self.settled = False
            return out + self.poll(now)
        return out

    def next_deadline(self) -> float:
        """When :meth:`poll` has something to do next."""
        times = [self._next_frag_test if self._frag is None else self._frag[1].deadline]
        if self._probe is not None:
            times.append(self._probe[1].deadline)
        elif self.settled:
            times.append(self._next_search)
        else:
            times.append(float("-inf"))  # search in progress: poll now
        return min(times)

    def on_ack(self, kind: int, token: int, size: int, now: float) -> None:
        """A PMTU_ACK / FRAG_TEST_ACK arrived; ``size`` is what the peer received."""
        if kind == FRAG_TEST_ACK:
            if self._frag is not None and self._frag[0] == token and size >= FRAG_TEST_SIZE:
                self.frag_ok = True
                self._frag = None
                self._next_frag_test = now + self.frag_test_interval
            return
        if kind != PMTU_ACK or not 0 < size <= self.ceiling:
            return
        # any ack, even a late one, proves that size got through
        if size > self.lo:
            self.lo = size
            self.hi = max(self.hi, size)
        if self._probe is not None and self._probe[0] == token:
            self._probe = None
        self._check_settled(now)

    def on_too_big(self, size: int, now: float, mtu_hint: int | None = None) -> None:
        """The kernel refused a DF datagram of ``size`` (EMSGSIZE), maybe with its IP_MTU."""
        bound = size - 1 if mtu_hint is None else min(size - 1, mtu_hint)
        bound = max(bound, self.floor)
        self.hi = min(self.hi, bound)
        if self.lo > self.hi:
            self.lo = self.floor
        if self._probe is not None and self._probe[1].size > self.hi:
            self._probe = None
        self.settled = False
        self._check_settled(now)

    def _check_settled(self, now: float) -> None:
        if self.hi - self.lo < SEARCH_STEP:
            self.hi = self.lo
            if not self.settled:
                self.settled = True
                self.known_good = self.lo
                self._next_search = now + self.reprobe_interval

    def _new_token(self) -> int:
        self._token += 1
        return self._token


# --- frames bigger than the path --------------------------------------------------------------

OVERSIZE = "oversize"  # drop reason: too big and nothing to do about it (e.g. ARP, IPv6)
FRAG_NEEDED = "frag_needed"  # dropped, ICMP "fragmentation needed" sent back instead
GSO_UNSUPPORTED = "gso_unsupported"
MALFORMED = "malformed"


class Fit(NamedTuple):
    send: list[Buffer]  # frames (maybe segments/fragments) that now fit
    inject: list[bytes]  # frames to hand back to our bridge (ICMP replies)
    drop: str | None


def frame_budget(max_datagram: int) -> int:
    """Largest data-plane frame one datagram of ``max_datagram`` bytes can carry."""
    return max_datagram - FRAMES_HEADER_LEN - FRAME_OVERHEAD


def fit_frame(frame: Buffer, max_frame: int, off: int = VNET_HDR_LEN) -> Fit:
    """Make ``frame`` fit ``max_frame`` bytes (see :func:`frame_budget`).

    TCP super-frames are segmented; IPv4 with DF gets ICMP "fragmentation needed" so the
    sender lowers its PMTU; other IPv4 is fragmented; anything else is dropped and counted.
    """
    if len(frame) <= max_frame:
        return Fit([frame], [], None)
    try:
        etype, l3 = ethertype(frame, off)
        ip_mtu = max_frame - l3  # l3 counts the vnet and Ethernet headers before the IP packet
        gso = gso_type(frame) if off == VNET_HDR_LEN else VNET_GSO_NONE
        if gso in (VNET_GSO_TCPV4, VNET_GSO_TCPV6):
            return Fit(list(segment_tcp(frame, ip_mtu, off)), [], None)
        if gso != VNET_GSO_NONE:
            return Fit([], [], GSO_UNSUPPORTED)
        if etype != ETHERTYPE_IPV4:
            return Fit([], [], OVERSIZE)
        if ipv4_header(frame, l3).dont_fragment:
            reply = icmp_frag_needed(frame, ip_mtu, off)
            return Fit([], [] if reply is None else [reply], FRAG_NEEDED)
        return Fit(list(fragment_ipv4(frame, ip_mtu, off)), [], None)
    except FrameError:
        return Fit([], [], MALFORMED)
