"""Datagrams from the network, sorted: what each one is and where it goes. Sans-IO.

The forwarder's receive loop decodes the common case itself (a clear FRAMES datagram from a
known peer, without a call per datagram) and hands every other datagram to
:meth:`Inbound.datagram`, which decides:

* a sender we have no route for, or ourselves: dropped (``unknown_sender``);
* a FRAGMENT piece: into the :class:`weavenet.dataplane.sleeve.Reassembler`, and the whole
  datagram, once complete, through this same dispatch;
* a sealed FRAMES datagram: its blob is queued per sender for the crypto actor when we
  encrypt, dropped (``sealed_unexpected``) when we do not; a clear one is dropped
  (``plaintext_refused``) when we encrypt: never downgrade;
* clear frames: to the forwarding core (:meth:`weavenet.dataplane.forwarding.Forwarder.received`),
  as are the bodies the crypto actor opened (:meth:`Inbound.opened`);
* a control message: listed for the actor, which has the neighbour's path verify it
  (:meth:`weavenet.dataplane.path.Path.verify`: tagged with the keys of our TCP connection to
  that peer, fresh), and only then answers (:func:`reply_to`) and updates the path; sending is
  I/O, so it is not done here.

Drops are counted in the wakeup's :class:`~weavenet.dataplane.forwarding.Plan`, which the
actor merges into its counters with everything else the plan holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from weavenet.dataplane.forwarding import Plan
from weavenet.dataplane.frame import Buffer
from weavenet.dataplane.path import Addr, Path
from weavenet.dataplane.sealed import SEALED_PREFIX_LEN, unpack_opened
from weavenet.dataplane.sleeve import (
    ENCRYPTED,
    FRAG_TEST,
    FRAG_TEST_ACK,
    FRAGMENT,
    FRAMES,
    HEARTBEAT,
    HEARTBEAT_ACK,
    OUTER_LEN,
    PMTU_ACK,
    PMTU_PROBE,
    Control,
    Piece,
    Reassembler,
    SleeveError,
    parse_header,
    parse_piece,
    unpack_control_body,
    unpack_frames,
)

# drop reasons
MALFORMED = "malformed_datagram"
UNKNOWN_SENDER = "unknown_sender"
SEALED = "sealed_unexpected"  # an encrypted datagram while we run without a password
PLAINTEXT = "plaintext_refused"  # a clear FRAMES datagram while we encrypt: never downgrade
REASSEMBLY_FAILED = "reassembly_failed"  # datagrams whose pieces did not all arrive in time

Received = Callable[[int, int, Any, float, Plan], Plan]  # Forwarder.received


class Arrivals:
    """What one wakeup's datagrams ask for besides the frames' plan: sealed blobs to open
    (sender wire id -> blobs) and control messages to handle (with the address they came from)."""

    __slots__ = ("plan", "sealed", "controls")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.sealed: dict[int, list[memoryview]] = {}
        self.controls: list[tuple[Control, Addr]] = []


class Inbound:
    """Sorts the datagrams the receive loop does not handle inline; see the module docstring.

    ``peers`` (wire id -> name) is replaced on every routes update; ``paths`` is the actor's
    own dict of neighbours' paths, which traffic keeps alive.
    """

    __slots__ = ("me", "encrypt", "received", "paths", "peers", "reassembler")

    def __init__(self, me: int, *, encrypt: bool, received: Received,
                 paths: Mapping[int, Path]) -> None:
        self.me = me
        self.encrypt = encrypt
        self.received = received
        self.paths = paths
        self.peers: Mapping[int, str] = {}
        self.reassembler = Reassembler()

    def datagram(self, data: Any, addr: Addr, now: float, out: Arrivals) -> int:
        """One datagram from ``addr``; returns how many frames it carried in clear."""
        plan = out.plan
        try:
            hdr = parse_header(data)
            if hdr.sender not in self.peers or hdr.sender == self.me:
                plan.drop(UNKNOWN_SENDER)
                return 0
            if hdr.kind == FRAGMENT:
                return self.piece(parse_piece(hdr, data), addr, now, out)
            if hdr.flags & ENCRYPTED:
                if self.encrypt and hdr.kind == FRAMES:
                    blobs = out.sealed.get(hdr.sender)
                    if blobs is None:
                        blobs = out.sealed[hdr.sender] = []
                    blobs.append(memoryview(data)[SEALED_PREFIX_LEN:])
                else:
                    plan.drop(SEALED)
                return 0
            body = memoryview(data)[OUTER_LEN:]
            if hdr.kind == FRAMES:
                if self.encrypt:
                    plan.drop(PLAINTEXT)
                    return 0
                fh, frames = unpack_frames(hdr, body)
                path = self.paths.get(hdr.sender)
                if path is not None:
                    path.traffic(now)
                self.received(fh.src_peer, fh.dst_peer, frames, now, plan)
                return len(frames)
            out.controls.append((unpack_control_body(hdr, body, len(data)), addr))
        except SleeveError:
            plan.drop(MALFORMED)
        return 0

    def piece(self, piece: Piece, addr: Addr, now: float, out: Arrivals) -> int:
        """A piece (or a GRO-merged run of pieces) of a datagram bigger than the path MTU."""
        plan = out.plan
        if piece.sender not in self.peers or piece.sender == self.me:
            plan.drop(UNKNOWN_SENDER)
            return 0
        reassembler = self.reassembler
        dropped = reassembler.dropped
        whole = reassembler.add(piece, now)
        if reassembler.dropped != dropped:
            plan.drop(REASSEMBLY_FAILED, reassembler.dropped - dropped)
        if whole is None:
            return 0
        try:
            if parse_header(whole).kind == FRAGMENT:
                raise SleeveError("a reassembled datagram must not be a fragment")
        except SleeveError:
            plan.drop(MALFORMED)
            return 0
        return self.datagram(whole, addr, now, out)

    def opened(self, bodies: Iterable[Buffer], sender: int, now: float, plan: Plan) -> int:
        """FRAMES bodies the crypto actor opened for ``sender`` (empty ones failed to open);
        returns how many frames they carried."""
        n = 0
        opened = False
        for body in bodies:
            if not body:
                continue
            try:
                fh, frames = unpack_opened(body)
            except SleeveError:
                plan.drop(MALFORMED)
                continue
            opened = True
            n += len(frames)
            self.received(fh.src_peer, fh.dst_peer, frames, now, plan)
        path = self.paths.get(sender)
        if opened and path is not None:
            path.traffic(now)  # authentic traffic proves the path as well as heartbeats
        return n


_REPLIES = {HEARTBEAT: HEARTBEAT_ACK, PMTU_PROBE: PMTU_ACK, FRAG_TEST: FRAG_TEST_ACK}


def reply_to(msg: Control) -> tuple[int, int] | None:
    """The (kind, value) of our answer to a control message, None if it needs none: a
    heartbeat is acked (value 0), a PMTU probe or frag test with the size that arrived, which
    is what the sender measures. The answer carries the message's token."""
    kind = _REPLIES.get(msg.kind)
    if kind is None:
        return None
    return kind, 0 if kind == HEARTBEAT_ACK else msg.size
