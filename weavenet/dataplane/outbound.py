"""Frames for one neighbour's path, packed into sleeve datagrams that fit it. Sans-IO.

The forwarder sends what :func:`pack_for_path` returns, whole or as FRAGMENT pieces (I/O, in
the actor); with ``gather`` (clear datagrams) those of a frame or two stay as their parts,
which ``sendmsg`` gathers without joining them first
(:func:`weavenet.dataplane.sleeve.pack_datagram`). Frames too big for the path even alone are
the slow path: TCP super-frames are segmented, IPv4 is fragmented or answered with ICMP
"fragmentation needed" for our bridge, anything else is dropped
(:func:`weavenet.dataplane.pmtu.fit_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from weavenet.dataplane.frame import Buffer
from weavenet.dataplane.pmtu import fit_frame, frame_budget
from weavenet.dataplane.sleeve import pack_datagram


class Outgoing(NamedTuple):
    datagrams: list  # bytes, or with gather a datagram's parts (a list)
    sent: int  # frames the datagrams carry, fitted ones included
    fitted: int  # frames made to fit (segments and fragments of oversized ones)
    inject: list[bytes]  # ICMP "fragmentation needed" replies for our bridge
    drops: dict[str, int]  # reason -> frames


def pack_for_path(frames: Sequence[Buffer], max_datagram: int, *, sender: int, src_peer: int,
                  dst_peer: int, seq: int, gather: bool = False) -> Outgoing:
    """:func:`weavenet.dataplane.sleeve.pack_datagram` of ``frames`` into datagrams of at most
    ``max_datagram`` bytes numbered from ``seq``; the frames too big even alone are made to fit
    and packed after the others, numbered on."""
    packed = pack_datagram(frames, max_datagram, sender=sender, src_peer=src_peer,
                           dst_peer=dst_peer, seq=seq, gather=gather)
    datagrams = packed.datagrams
    sent = len(frames) - len(packed.oversized)
    if not packed.oversized:
        return Outgoing(datagrams, sent, 0, [], {})
    budget = frame_budget(max_datagram)
    fitted: list[Buffer] = []
    inject: list[bytes] = []
    drops: dict[str, int] = {}
    for frame in packed.oversized:
        fit = fit_frame(frame, budget)
        if fit.drop is not None:
            drops[fit.drop] = drops.get(fit.drop, 0) + 1
        fitted.extend(fit.send)
        inject.extend(fit.inject)
    if fitted:
        more = pack_datagram(fitted, max_datagram, sender=sender, src_peer=src_peer,
                             dst_peer=dst_peer, seq=seq + len(datagrams), gather=gather)
        datagrams = datagrams + more.datagrams
        sent += len(fitted)
    return Outgoing(datagrams, sent, len(fitted), inject, drops)
