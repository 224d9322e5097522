"""The per-frame forwarding decision of the sleeve, as a pure class.

Given our peer, a :class:`MacCache` and a :class:`RouteTable`, decide for each frame whether to
inject it on the local bridge, send it to next-hop peers, or drop it (and why):

* captured locally: learn the source MAC as ours; unicast to the peer owning the destination
  MAC via its next hop; broadcast, multicast and unknown unicast flood along *our* broadcast
  tree; frames for a MAC that is local are dropped (the bridge already delivered them).
* received from the network (the datagram names the peer that captured the frame and the
  peer it is for, or broadcast): learn the source MAC at the capturing peer; inject if for us
  or broadcast; relay to the next hop for others; relay broadcasts along the *source's*
  tree, so every peer gets a flooded frame exactly once.
* with the fast datapath (``set_fastdp``: the peers whose frames the kernel's VXLAN device
  carries): the bridge hands a local broadcast or multicast frame to both the VXLAN port (which
  floods it to exactly the fastdp peers) and our TAP; so the sleeve sends it, addressed to each
  peer (not along the tree), to every *other* reachable peer once, relayed as unicast. A unicast
  frame reaches the TAP only when the bridge did not send it by VXLAN (the VXLAN port has
  unicast flooding off, see ``weavenet.host.vxlan``), so unicast, known or not, is the sleeve's
  as before (and a MAC at a fastdp peer seen this way is reported in ``Plan.to_kernel``, so
  the bridge can be told to send its next frames by VXLAN). Frames that came in by VXLAN
  never reach the TAP (isolated ports), and frames we inject never leave by VXLAN: each peer
  gets each frame exactly once, by one path, in any mix.
* loop protection: frames that claim to come from us, and frames carrying a source MAC we
  saw locally within ``local_grace`` seconds, are dropped (our own frames that came back).
  After the grace period a remote claim wins: that is a container that moved away.

Batch methods fill a :class:`Plan` grouped by (next_hop, src_peer, dst_peer), which is
exactly what the sleeve packs into one datagram stream; ``decide_*`` wrap them for one frame.
Peers are opaque hashables (the same values the route table uses).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import NamedTuple

from weavenet.dataplane.frame import ETH_HLEN, VNET_HDR_LEN, Buffer
from weavenet.dataplane.maccache import Learned, MacCache

Peer = Hashable
SendKey = tuple[Peer, Peer, Peer]  # (next_hop, src_peer, dst_peer)

# drop reasons (counter names)
RUNT = "runt"
BAD_SRC_MAC = "bad_src_mac"
LOCAL_DST = "local_dst"
NO_ROUTE = "no_route"
NO_PEERS = "no_peers"
FASTDP_CARRIED = "fastdp_carried"  # a broadcast only fastdp peers need: the kernel sent it
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

    __slots__ = ("inject", "send", "drops", "learned", "to_kernel")

    def __init__(self) -> None:
        self.inject: list[Buffer] = []
        self.send: dict[SendKey, list[Buffer]] = {}
        self.drops: dict[str, int] = {}
        # (mac, peer, NEW|MOVED) for logs and status; refreshes are not listed
        self.learned: list[tuple[bytes, Peer, Learned]] = []
        # (dst mac, peer): unicast the sleeve carried to a MAC at a fastdp peer (the bridge
        # learned it on the TAP earlier); the forwarder asks netconf to move it to the kernel
        self.to_kernel: list[tuple[bytes, Peer]] = []

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + n


class RouteTable(NamedTuple):
    """The forwarder's snapshot of the next hops (not the gossip computation,
    :class:`weavenet.mesh.routes.Routes`, that produces it).

    unicast: dst_peer -> next hop; broadcast: src_peer -> next hops from us.
    """

    unicast: Mapping[Peer, Peer]
    broadcast: Mapping[Peer, Sequence[Peer]]


class Forwarder:
    def __init__(
        self,
        ourself: Peer,
        macs: MacCache,
        table: RouteTable | None = None,
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
        self.table = RouteTable({}, {})
        self.fastdp: frozenset[Peer] = frozenset()
        self._sleeve_flood: list[SendKey] | None = None  # None: flood along our tree
        if table is not None:
            self.set_table(table)

    def set_table(self, table: RouteTable | Mapping[str, Mapping]) -> None:
        """Install a new snapshot (a RouteTable or {"unicast": ..., "broadcast": ...})."""
        if not isinstance(table, RouteTable):
            table = RouteTable(table["unicast"], table["broadcast"])
        broadcast = {src: tuple(hops) for src, hops in table.broadcast.items()}
        self.table = RouteTable(dict(table.unicast), broadcast)
        self.set_fastdp(self.fastdp)

    def set_fastdp(self, peers: Iterable[Peer]) -> None:
        """The peers on the fast datapath now (see the module docstring)."""
        self.fastdp = frozenset(peers)
        if not self.fastdp:
            self._sleeve_flood = None
            return
        us = self.ourself
        self._sleeve_flood = [(hop, us, dst) for dst, hop in self.table.unicast.items()
                              if dst != us and dst not in self.fastdp]

    # --- batches ---------------------------------------------------------------------------

    def captured(self, frames: Iterable[Buffer], now: float, plan: Plan | None = None) -> Plan:
        """Frames read from our bridge (the capture TAP)."""
        plan = Plan() if plan is None else plan
        off = self.eth_offset
        minlen = off + ETH_HLEN
        us = self.ourself
        learn = self.macs.learn
        lookup = self.macs.lookup
        unicast = self.table.unicast
        flood_keys = [(hop, us, self.broadcast_peer) for hop in self.table.broadcast.get(us, ())]
        sleeve_flood = self._sleeve_flood
        send = plan.send
        # Frames of one flow arrive in runs: decide once per run of identical MAC pairs.
        # Nothing else can change the cache between two consecutive frames of a run.
        last_pair = None
        targets: list[list[Buffer]] = []
        reason: str | None = None
        for frame in frames:
            if len(frame) < minlen:
                plan.drop(RUNT)
                continue
            pair = bytes(frame[off : off + 12])
            if pair != last_pair:
                last_pair = pair
                targets, reason = [], None
                src = pair[6:]
                if src[0] & 1:
                    reason = BAD_SRC_MAC
                else:
                    result = learn(src, us, now)
                    if result:
                        plan.learned.append((src, us, result))
                    owner = None if pair[0] & 1 else lookup(pair[:6], now)
                    if pair[0] & 1 and sleeve_flood is not None:
                        # broadcast or multicast: the kernel sent it to the fastdp peers
                        keys = sleeve_flood
                        reason = None if keys else FASTDP_CARRIED
                    elif owner is None:  # broadcast, multicast or unknown unicast: flood
                        keys = flood_keys
                        reason = None if flood_keys else NO_PEERS
                    elif owner == us:
                        keys, reason = [], LOCAL_DST
                    elif (hop := unicast.get(owner)) is None:
                        keys, reason = [], NO_ROUTE
                    else:
                        keys = [(hop, us, owner)]
                        if owner in self.fastdp:
                            plan.to_kernel.append((pair[:6], owner))
                    for key in keys:
                        lst = send.get(key)
                        if lst is None:
                            lst = send[key] = []
                        targets.append(lst)
            if reason is not None:
                plan.drop(reason)
            for lst in targets:
                lst.append(frame)
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
                (hop, src_peer, dst_peer) for hop in self.table.broadcast.get(src_peer, ())
            ]
        elif dst_peer == us:
            relay_keys = []
        else:
            hop = self.table.unicast.get(dst_peer)
            if hop is None:
                plan.drop(NO_ROUTE, len(frames))
                return plan
            relay_keys = [(hop, src_peer, dst_peer)]
        send = plan.send
        targets = [plan.inject] if is_broadcast or dst_peer == us else []
        for key in relay_keys:
            lst = send.get(key)
            if lst is None:
                lst = send[key] = []
            targets.append(lst)
        last_src = None
        reason: str | None = None
        for frame in frames:
            if len(frame) < minlen:
                plan.drop(RUNT)
                continue
            src = bytes(frame[off + 6 : off + 12])
            if src != last_src:  # runs of one source MAC are decided once, as in captured()
                last_src = src
                reason = None
                entry = macs.entry(src)
                if src[0] & 1:
                    reason = BAD_SRC_MAC
                elif entry is not None and entry[0] == us and now - entry[1] < grace:
                    reason = OWN_MAC_FROM_NETWORK
                else:
                    result = macs.learn(src, src_peer, now)
                    if result:
                        plan.learned.append((src, src_peer, result))
            if reason is not None:
                plan.drop(reason)
                continue
            for lst in targets:
                lst.append(frame)
        for key in relay_keys:
            if not send[key]:
                del send[key]  # every frame was dropped: no empty send lists for the caller
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
