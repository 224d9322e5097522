"""The topology: every peer's own record of itself, merged by gossip.

Each peer owns exactly one record (name, nickname, incarnation UID, version, connections) and is
the only one that changes it, bumping the version each time. Everyone else merges records by
keeping the greater one under a total order (version first), which makes merging a join:
commutative, associative and idempotent, so gossip may arrive in any order, duplicated, and every
peer still ends with the same records.

Sans-IO: no sockets and no clock. ``weavenet.mesh.router.Router`` feeds received records into
``Peers.merge`` and passes on what it returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from weavenet.mesh.peer import MAX_NICKNAME_LEN, Peer, PeerIdentityError, PeerName

MAX_ADDRESS_LEN = 255
MAX_CONNECTIONS_PER_PEER = 4096
MAX_RECORDS_PER_UPDATE = 65536
MAX_UINT64 = (1 << 64) - 1
# Gossiped versions stay below 2**63, so that the owner outranking one (version + 1) still fits
# the unsigned 64 bits msgpack encodes: a record it could not re-encode would make every merge,
# every full exchange and every error path fail again while the record circulates.
MAX_VERSION = (1 << 63) - 1


class TopologyDecodeError(ValueError):
    """A gossiped record is malformed."""


@dataclass(frozen=True, order=True)
class Connection:
    """One connection as reported by the peer that owns the record.

    ``address`` is the remote TCP address as that peer sees it; ``outbound`` says the owner dialled
    it (so the address is dialable by others); ``established`` says the handshake completed, and
    routes use a connection only when both ends report it established. (The gossip actor records
    connections established as they are accepted; the flag stays on the wire, where a peer that
    reports one not yet established keeps it out of everyone's routes.)
    """

    peer: PeerName
    address: str
    established: bool
    outbound: bool


@dataclass(frozen=True)
class PeerRecord:
    """A peer's own view of itself, as gossiped."""

    name: PeerName
    nickname: str
    uid: int
    version: int
    connections: tuple[Connection, ...] = ()  # sorted by peer name, at most one per peer

    def connection(self, peer: PeerName) -> Connection | None:
        for conn in self.connections:
            if conn.peer == peer:
                return conn
        return None

    @property
    def peer(self) -> Peer:
        return Peer(self.name, self.nickname, self.uid)


def merge_key(record: PeerRecord) -> tuple[int, int, str, tuple[Connection, ...]]:
    """The total order behind the join: the higher version wins; the rest only breaks ties.

    The owner never reuses a version, so ties only arise between incarnations (or a faulty peer);
    breaking them on every field keeps the merge order-independent even then.
    """
    return (record.version, record.uid, record.nickname, record.connections)


def supersedes(new: PeerRecord, old: PeerRecord | None) -> bool:
    """Whether ``new`` replaces ``old`` (records of the same peer) in a merge."""
    return old is None or merge_key(new) > merge_key(old)


# -- gossip encoding -------------------------------------------------------------------------------


def encode_record(record: PeerRecord) -> dict[str, Any]:
    """A msgpack-ready form of a record (short keys; connections as 4-element lists)."""
    return {
        "name": str(record.name),
        "nick": record.nickname,
        "uid": record.uid,
        "ver": record.version,
        "conns": [[str(c.peer), c.address, c.established, c.outbound] for c in record.connections],
    }


def _uint(obj: Mapping[Any, Any], key: str, maximum: int) -> int:
    value = obj.get(key)
    if type(value) is not int or not 0 <= value <= maximum:
        raise TopologyDecodeError(f"record field {key!r} must be an integer in [0, {maximum}]")
    return value


def _name(value: Any, what: str) -> PeerName:
    try:
        return PeerName(value)
    except PeerIdentityError as exc:
        raise TopologyDecodeError(f"{what}: {exc}") from None


def decode_record(obj: Any) -> PeerRecord:
    """Validate and build a record from gossip; unknown keys and extra list items are ignored."""
    if not isinstance(obj, dict):
        raise TopologyDecodeError("peer record must be a map")
    name = _name(obj.get("name"), "record name")
    nickname = obj.get("nick")
    if not isinstance(nickname, str) or len(nickname) > MAX_NICKNAME_LEN:
        raise TopologyDecodeError("record nickname must be a string of at most 255 characters")
    uid, version = _uint(obj, "uid", MAX_UINT64), _uint(obj, "ver", MAX_VERSION)
    raw_conns = obj.get("conns")
    if not isinstance(raw_conns, list) or len(raw_conns) > MAX_CONNECTIONS_PER_PEER:
        raise TopologyDecodeError("record connections must be a list of bounded length")
    conns: dict[PeerName, Connection] = {}
    for item in raw_conns:
        if not isinstance(item, list) or len(item) < 4:
            raise TopologyDecodeError("connection must be a list [peer, address, est, outbound]")
        peer = _name(item[0], "connection peer")
        address, established, outbound = item[1], item[2], item[3]
        if not isinstance(address, str) or len(address) > MAX_ADDRESS_LEN:
            raise TopologyDecodeError("connection address must be a short string")
        if type(established) is not bool or type(outbound) is not bool:
            raise TopologyDecodeError("connection flags must be booleans")
        if peer == name or peer in conns:
            raise TopologyDecodeError(f"record of {name} lists {peer} twice or itself")
        conns[peer] = Connection(peer, address, established, outbound)
    return PeerRecord(name, nickname, uid, version, tuple(sorted(conns.values())))


def decode_records(obj: Any) -> tuple[tuple[PeerRecord, ...], int]:
    """The valid records of a topology update, and how many were refused.

    One bad record (forged, out of range) is refused on its own: the sender may only be passing
    on what a third peer made, and the connection's good records still count. A list that is
    not a list, or too long, is the sender's own fault and raises.
    """
    if not isinstance(obj, list) or len(obj) > MAX_RECORDS_PER_UPDATE:
        raise TopologyDecodeError("topology update must be a list of at most "
                                  f"{MAX_RECORDS_PER_UPDATE} records")
    records = []
    for item in obj:
        try:
            records.append(decode_record(item))
        except TopologyDecodeError:
            continue
    return tuple(records), len(obj) - len(records)


# -- the merged view -------------------------------------------------------------------------------


class Peers:
    """All records known to one peer, its own record included and owned.

    Local changes (``add_connection`` & co.) bump the local version. ``merge`` folds in gossip and
    returns the names worth passing on; ``garbage_collect`` drops peers we can no longer reach.
    """

    def __init__(self, local: Peer) -> None:
        self.local: Peer = local
        self._records: dict[PeerName, PeerRecord] = {
            local.name: PeerRecord(local.name, local.nickname, local.uid, 1)
        }
        self._reachable: frozenset[PeerName] | None = None

    # read access
    @property
    def local_name(self) -> PeerName:
        return self.local.name

    @property
    def local_record(self) -> PeerRecord:
        return self._records[self.local.name]

    def get(self, name: PeerName) -> PeerRecord | None:
        return self._records.get(name)

    def __getitem__(self, name: PeerName) -> PeerRecord:
        return self._records[name]

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[PeerName]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> Mapping[PeerName, PeerRecord]:
        """A read-only view of the records (values are immutable)."""
        return self._records.copy()

    def fingerprint(self) -> dict[PeerName, tuple[int, int]]:
        """{name: (version, uid)}: equal fingerprints mean equal views (records are owned)."""
        return {n: (r.version, r.uid) for n, r in self._records.items()}

    # what to gossip
    def update_for(self, names: Iterable[PeerName]) -> tuple[PeerRecord, ...]:
        """The records for ``names`` that we hold (for an incremental update)."""
        return tuple(self._records[n] for n in sorted(names) if n in self._records)

    def full_update(self) -> tuple[PeerRecord, ...]:
        """Everything worth telling a new neighbour or a periodic full exchange.

        Placeholders (version 0, made for a neighbour before its own record arrives) are left
        out: they carry nothing the owner will not send itself.
        """
        return tuple(r for _, r in sorted(self._records.items()) if r.version > 0)

    # local changes
    def _set_local(self, connections: dict[PeerName, Connection]) -> None:
        old = self.local_record
        self._records[old.name] = replace(
            old, version=old.version + 1, connections=tuple(sorted(connections.values()))
        )
        self._reachable = None

    def add_connection(
        self, remote: Peer, address: str, *, outbound: bool, established: bool = False
    ) -> bool:
        """Record a handshaken connection to ``remote``; True if our record changed."""
        if remote.name == self.local.name:
            raise ValueError("a peer cannot record a connection to itself")
        conns = {c.peer: c for c in self.local_record.connections}
        new = Connection(remote.name, address, established, outbound)
        if conns.get(remote.name) == new:
            return False
        conns[remote.name] = new
        self._set_local(conns)
        if remote.name not in self._records:
            # A placeholder so status and reachability know the neighbour at once; any record
            # the neighbour gossips (version >= 1) supersedes it.
            self._records[remote.name] = PeerRecord(remote.name, remote.nickname, remote.uid, 0)
        return True

    def remove_connection(self, remote: PeerName) -> bool:
        conns = {c.peer: c for c in self.local_record.connections}
        if conns.pop(remote, None) is None:
            return False
        self._set_local(conns)
        return True

    # gossip in
    def merge(self, records: Iterable[PeerRecord]) -> set[PeerName]:
        """Fold gossiped records in; return the names whose records should be passed on.

        That is the records that improved and are reachable from us, plus peers whose records we
        already held but which only now became reachable (a record can arrive before the record
        that connects it to us; without this it would never be forwarded). Unreachable records
        are kept but not forwarded, so stale gossip about departed peers dies out here instead of
        flooding. Merging never garbage-collects, so the result is independent of arrival order.
        """
        before = self.reachable()
        improved: set[PeerName] = set()
        local = self.local
        for rec in records:
            if rec.name == local.name:
                own = self.local_record
                if rec != own and merge_key(rec) >= merge_key(own):
                    self._outrank(rec)
                    improved.add(local.name)
                continue
            if supersedes(rec, self._records.get(rec.name)):
                self._records[rec.name] = rec
                improved.add(rec.name)
        if not improved:
            return improved
        self._reachable = None
        after = self.reachable()
        return (improved | (after - before)) & after

    def outdated(self, records: Iterable[PeerRecord]) -> set[PeerName]:
        """Names whose record, as received, is older than the one we hold (call after merge).

        Answering the sender with ours is what lets a restarted peer win quickly: its fresh
        incarnation starts at a low version, so peers still holding its previous life's record
        reject the new one, and only gossip flowing back towards it lets it outrank the old one.
        Without the answer only the periodic full exchange would repair the view.
        """
        out: set[PeerName] = set()
        for rec in records:
            held = self._records.get(rec.name)
            if held is not None and held != rec and merge_key(held) > merge_key(rec):
                out.add(rec.name)
        return out

    def _outrank(self, rec: PeerRecord) -> None:
        # Someone holds a record under our name that we did not make (a previous incarnation,
        # or a lost state): jump past its version so ours wins everywhere.
        own = self.local_record
        self._records[own.name] = replace(own, version=max(own.version, rec.version) + 1)

    # reachability and garbage collection
    def reachable(self) -> frozenset[PeerName]:
        """Peers reachable from us following each record's own connections (any state)."""
        if self._reachable is None:
            seen = {self.local.name}
            queue = deque([self.local.name])
            records = self._records
            while queue:
                rec = records.get(queue.popleft())
                if rec is None:
                    continue
                for conn in rec.connections:
                    if conn.peer not in seen and conn.peer in records:
                        seen.add(conn.peer)
                        queue.append(conn.peer)
            self._reachable = frozenset(seen)
        return self._reachable

    def garbage_collect(self) -> set[PeerName]:
        """Forget peers that are unreachable from us; return their names.

        Call it after removing a local connection and after merges (or on a timer): a record that
        arrives ahead of the record connecting it is dropped by an early collection and comes
        back with the next full exchange.
        """
        reach = self.reachable()
        gone = {name for name in self._records if name not in reach}
        for name in gone:
            del self._records[name]
        return gone
