"""The per-frame forwarding decision of the sleeve, as a pure class.

Given our peer, a :class:`MacCache` and a routes snapshot, decide for each frame whether to
inject it on the local bridge, send it to next-hop peers, or drop it (and why):

* captured locally: learn the source MAC as ours; unicast to the peer owning the destination
  MAC via its next hop; broadcast, multicast and unknown unicast flood along *our* broadcast
  tree; frames for a MAC that is local are dropped (the bridge already delivered them).
* received from the network (the datagram names the peer that captured the frame and the
  peer it is for, or broadcast): learn the source MAC at the capturing peer; inject if for us
  or broadcast; relay to the next hop for others; relay broadcasts along the *source's*
  tree, so every peer gets a flooded frame exactly once.
* loop protection: frames that claim to come from us, and frames carrying a source MAC we
  saw locally within ``local_grace`` seconds, are dropped (our own frames that came back).
  After the grace period a remote claim wins: that is a container that moved away.

Batch methods fill a :class:`Plan` grouped by (next_hop, src_peer, dst_peer), which is
exactly what the sleeve packs into one datagram stream; ``decide_*`` wrap them for one frame.
Peers are opaque hashables (the same values the routes use).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple

from weavenet.frame import ETH_HLEN, VNET_HDR_LEN, Buffer
from weavenet.maccache import Learned, MacCache

Peer = Hashable
SendKey = tuple[Peer, Peer, Peer]  # (next_hop, src_peer, dst_peer)

# drop reasons (counter names)
RUNT = "runt"
BAD_SRC_MAC = "bad_src_mac"
LOCAL_DST = "local_dst"
NO_ROUTE = "no_route"
NO_PEERS = "no_peers"
OWN_FRAME_LOOPED = "own_frame_looped"
OWN_MAC_FROM_NETWORK = "own_mac_from_network"

DEFAULT_LOCAL_GRACE = 3.0


class Inject(NamedTuple):
    frame: Buffer


class Send(NamedTuple):
    next_hop: Peer
    src_peer: Peer
    dst_peer: Peer
    frame: Buffer


class Drop(NamedTuple):
    reason: str


Action = Inject | Send | Drop


class Plan:
    """What to do with a batch: frames to inject, frames per send key, drop counts."""

    __slots__ = ("inject", "send", "drops", "learned")

    def __init__(self) -> None:
        self.inject: list[Buffer] = []
        self.send: dict[SendKey, list[Buffer]] = {}
        self.drops: dict[str, int] = {}
        # (mac, peer, NEW|MOVED) for logs and status; refreshes are not listed
        self.learned: list[tuple[bytes, Peer, Learned]] = []

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n


class Routes(NamedTuple):
    """unicast: dst_peer -> next hop; broadcast: src_peer -> next hops from us."""

    unicast: Mapping[Peer, Peer]
    broadcast: Mapping[Peer, Sequence[Peer]]


class Forwarder:
    def __init__(
        self,
        ourself: Peer,
        macs: MacCache,
        routes: Routes | None = None,
        *,
        eth_offset: int = VNET_HDR_LEN,
        local_grace: float = DEFAULT_LOCAL_GRACE,
        broadcast_peer: Peer = None,
    ) -> None:
        self.ourself = ourself
        self.macs = macs
        self.eth_offset = eth_offset
        self.local_grace = local_grace
        # dst_peer value of flooded frames; 0 if you run the forwarder on sleeve wire ids
        self.broadcast_peer = broadcast_peer
        self.routes = Routes({}, {})
        if routes is not None:
            self.set_routes(routes)

    def set_routes(self, routes: Routes | Mapping[str, Mapping]) -> None:
        """Install a new snapshot (a Routes or {"unicast": ..., "broadcast": ...})."""
        if not isinstance(routes, Routes):
            routes = Routes(routes["unicast"], routes["broadcast"])
        broadcast = {src: tuple(hops) for src, hops in routes.broadcast.items()}
        self.routes = Routes(dict(routes.unicast), broadcast)

    # --- batches ---------------------------------------------------------------------------

    def captured(self, frames: Iterable[Buffer], now: float, plan: Plan | None = None) -> Plan:
        """Frames read from our bridge (the capture TAP)."""
        plan = Plan() if plan is None else plan
        off = self.eth_offset
        minlen = off + ETH_HLEN
        us = self.ourself
        learn = self.macs.learn
        lookup = self.macs.lookup
        unicast = self.routes.unicast
        flood_keys = [(hop, us, self.broadcast_peer) for hop in self.routes.broadcast.get(us, ())]
        send = plan.send
        for frame in frames:
            if len(frame) < minlen:
                plan.drop(RUNT)
                continue
            src = bytes(frame[off + 6 : off + 12])
            if src[0] & 1:
                plan.drop(BAD_SRC_MAC)
                continue
            result = learn(src, us, now)
            if result:
                plan.learned.append((src, us, result))
            owner = None if frame[off] & 1 else lookup(bytes(frame[off : off + 6]), now)
            if owner is None:  # broadcast, multicast or unknown unicast: flood
                if not flood_keys:
                    plan.drop(NO_PEERS)
                for key in flood_keys:
                    if key in send:
                        send[key].append(frame)
                    else:
                        send[key] = [frame]
            elif owner == us:
                plan.drop(LOCAL_DST)
            else:
                hop = unicast.get(owner)
                if hop is None:
                    plan.drop(NO_ROUTE)
                    continue
                key = (hop, us, owner)
                if key in send:
                    send[key].append(frame)
                else:
                    send[key] = [frame]
        return plan

    def received(
        self,
        src_peer: Peer,
        dst_peer: Peer,
        frames: Sequence[Buffer],
        now: float,
        plan: Plan | None = None,
    ) -> Plan:
        """Frames from one sleeve datagram: captured at ``src_peer``, for ``dst_peer``."""
        plan = Plan() if plan is None else plan
        us = self.ourself
        if src_peer == us:
            plan.drop(OWN_FRAME_LOOPED, len(frames))
            return plan
        off = self.eth_offset
        minlen = off + ETH_HLEN
        macs = self.macs
        grace = self.local_grace
        is_broadcast = dst_peer == self.broadcast_peer
        if is_broadcast:
            relay_keys = [
                (hop, src_peer, dst_peer) for hop in self.routes.broadcast.get(src_peer, ())
            ]
        elif dst_peer == us:
            relay_keys = []
        else:
            hop = self.routes.unicast.get(dst_peer)
            if hop is None:
                plan.drop(NO_ROUTE, len(frames))
                return plan
            relay_keys = [(hop, src_peer, dst_peer)]
        deliver = is_broadcast or dst_peer == us
        send = plan.send
        for frame in frames:
            if len(frame) < minlen:
                plan.drop(RUNT)
                continue
            src = bytes(frame[off + 6 : off + 12])
            if src[0] & 1:
                plan.drop(BAD_SRC_MAC)
                continue
            entry = macs.entry(src)
            if entry is not None and entry[0] == us and now - entry[1] < grace:
                plan.drop(OWN_MAC_FROM_NETWORK)
                continue
            result = macs.learn(src, src_peer, now)
            if result:
                plan.learned.append((src, src_peer, result))
            if deliver:
                plan.inject.append(frame)
            for key in relay_keys:
                if key in send:
                    send[key].append(frame)
                else:
                    send[key] = [frame]
        return plan

    # --- one frame, for tests and slow paths --------------------------------------------------

    def decide_captured(self, frame: Buffer, now: float) -> list[Action]:
        return _actions(self.captured((frame,), now))

    def decide_received(
        self, src_peer: Peer, dst_peer: Peer, frame: Buffer, now: float
    ) -> list[Action]:
        return _actions(self.received(src_peer, dst_peer, (frame,), now))


def _actions(plan: Plan) -> list[Action]:
    actions: list[Action] = [Inject(f) for f in plan.inject]
    for (hop, src, dst), frames in plan.send.items():
        actions.extend(Send(hop, src, dst, f) for f in frames)
    for reason, n in plan.drops.items():
        actions.extend(Drop(reason) for _ in range(n))
    return actions
