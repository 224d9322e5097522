"""Topology records: owned by their peer, versioned, merged as a join, collected if unreachable."""

from __future__ import annotations

import random
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.topology import (
    MAX_RECORDS_PER_UPDATE,
    MAX_UINT64,
    MAX_VERSION,
    Connection,
    PeerRecord,
    Peers,
    TopologyDecodeError,
    decode_record,
    decode_records,
    encode_record,
)

NAMES = [PeerName(f"02:00:00:00:00:{i:02x}") for i in range(1, 7)]
LOCAL = Peer(NAMES[0], "local", 1000)


def peer(i: int, uid: int = 1) -> Peer:
    return Peer(NAMES[i], f"host{i}", uid)


def record(i: int, version: int, *links: int, uid: int = 1, est: bool = True) -> PeerRecord:
    conns = tuple(Connection(NAMES[j], f"198.18.0.{j}:6783", est, True) for j in sorted(links))
    return PeerRecord(NAMES[i], f"host{i}", uid, version, conns)


def test_local_changes_bump_the_version_and_no_ops_do_not() -> None:
    peers = Peers(LOCAL)
    assert peers.local_record.version == 1
    assert peers.add_connection(peer(1), "198.18.0.1:6783", outbound=True)
    assert peers.local_record.version == 2
    assert not peers.add_connection(peer(1), "198.18.0.1:6783", outbound=True)
    assert peers.add_connection(peer(1), "198.18.0.1:6783", outbound=True, established=True)
    assert peers.local_record.connection(NAMES[1]).established  # type: ignore[union-attr]
    assert peers.remove_connection(NAMES[1])
    assert not peers.remove_connection(NAMES[1])
    assert peers.local_record.version == 4


def test_a_new_neighbour_gets_a_placeholder_that_its_own_record_supersedes() -> None:
    peers = Peers(LOCAL)
    peers.add_connection(peer(1), "198.18.0.1:6783", outbound=True)
    assert peers[NAMES[1]].version == 0
    assert NAMES[1] not in {r.name for r in peers.full_update()}
    assert peers.merge([record(1, 1, 0)]) == {NAMES[1]}
    assert peers[NAMES[1]].version == 1


def test_merge_keeps_the_higher_version_and_reports_only_improvements() -> None:
    peers = Peers(LOCAL)
    peers.add_connection(peer(1), "a:1", outbound=True)
    assert peers.merge([record(1, 3, 0)]) == {NAMES[1]}
    assert peers.merge([record(1, 3, 0)]) == set()
    assert peers.merge([record(1, 2, 0, 2)]) == set()
    assert peers[NAMES[1]].version == 3
    assert peers.merge([record(1, 4, 0, 2), record(2, 1, 1)]) == {NAMES[1], NAMES[2]}


def test_a_record_arriving_before_the_one_connecting_it_is_passed_on_once_reachable() -> None:
    peers = Peers(LOCAL)
    peers.add_connection(peer(1), "a:1", outbound=True)
    peers.merge([record(1, 1, 0)])
    # 2's record comes first, but nothing we know connects us to 2 yet: keep, do not forward.
    assert peers.merge([record(2, 1, 1)]) == set()
    assert NAMES[2] in peers
    # 1's new record links 2 in: now both are worth passing on.
    assert peers.merge([record(1, 2, 0, 2)]) == {NAMES[1], NAMES[2]}


def test_gossip_about_a_departed_peer_does_not_resurrect_it() -> None:
    peers = Peers(LOCAL)
    peers.add_connection(peer(1), "a:1", outbound=True)
    peers.merge([record(1, 1, 0)])
    assert peers.merge([record(3, 7, 5)]) == set()
    assert peers.garbage_collect() == {NAMES[3]}
    assert NAMES[3] not in peers


def test_losing_a_connection_collects_the_peers_only_reachable_through_it() -> None:
    peers = Peers(LOCAL)
    peers.add_connection(peer(1), "a:1", outbound=True)
    peers.add_connection(peer(2), "a:2", outbound=True)
    peers.merge([record(1, 1, 0, 3), record(2, 1, 0), record(3, 1, 1)])
    assert peers.garbage_collect() == set()
    peers.remove_connection(NAMES[1])
    assert peers.garbage_collect() == {NAMES[1], NAMES[3]}
    assert set(peers) == {NAMES[0], NAMES[2]}


def test_a_restarted_peer_outranks_the_record_of_its_previous_incarnation() -> None:
    reborn = Peers(Peer(NAMES[0], "local", 2000))  # same name, new UID, version 1
    stale = PeerRecord(NAMES[0], "local", 1000, 50, ())
    assert reborn.merge([stale]) == {NAMES[0]}
    assert reborn.local_record.version == 51
    assert reborn.local_record.uid == 2000
    other = Peers(peer(1))
    other.add_connection(Peer(NAMES[0], "local", 1000), "a:1", outbound=False)
    assert other.merge([stale]) == {NAMES[0]}
    assert other.merge([reborn.local_record]) == {NAMES[0]}
    assert other[NAMES[0]].uid == 2000


def test_our_own_record_echoed_back_changes_nothing() -> None:
    peers = Peers(LOCAL)
    peers.add_connection(peer(1), "a:1", outbound=True)
    own = peers.local_record
    assert peers.merge([own]) == set()
    assert peers.local_record == own


def test_records_roundtrip_through_the_gossip_encoding() -> None:
    rec = PeerRecord(
        NAMES[1],
        "h\u00e9te",
        2**64 - 1,
        12,
        (Connection(NAMES[2], "198.18.0.2:6783", True, False),),
    )
    assert decode_record(encode_record(rec)) == rec
    assert decode_records([encode_record(rec)] * 2) == ((rec, rec), 0)


def _enc(**changes: object) -> dict[str, object]:
    base = encode_record(record(1, 1, 2))
    base.update(changes)
    return base


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        _enc(name="nope"),
        _enc(nick=7),
        _enc(nick="x" * 256),
        _enc(uid=-1),
        _enc(uid=2**64),
        _enc(ver=True),
        _enc(ver=1.0),
        _enc(ver=MAX_VERSION + 1),  # no room left to outrank it: re-encoding would overflow
        _enc(ver=MAX_UINT64),
        _enc(conns={}),
        _enc(conns=[["02:00:00:00:00:02", "a", True]]),
        _enc(conns=[["02:00:00:00:00:02", 5, True, True]]),
        _enc(conns=[["02:00:00:00:00:02", "a", 1, True]]),
        _enc(conns=[[NAMES[1], "a", True, True]]),  # itself
        _enc(conns=[[NAMES[2], "a", True, True]] * 2),  # twice
    ],
)
def test_malformed_records_are_refused_with_a_typed_error(obj: object) -> None:
    with pytest.raises(TopologyDecodeError):
        decode_record(obj)


def test_unknown_record_keys_and_extra_connection_fields_are_ignored() -> None:
    obj = _enc(future="x")
    obj["conns"] = [[*obj["conns"][0], "extra"]]  # type: ignore[index]
    assert decode_record(obj) == record(1, 1, 2)


def test_a_record_at_the_largest_version_can_still_be_outranked_and_re_encoded() -> None:
    rec = decode_record(_enc(ver=MAX_VERSION, name=str(LOCAL.name), conns=[]))
    peers = Peers(LOCAL)
    assert peers.merge([rec]) == {LOCAL.name}
    assert peers.local_record.version == MAX_VERSION + 1
    # others refuse our record at that version, but encoding it never fails
    assert msgpack.unpackb(msgpack.packb(encode_record(peers.local_record)))["ver"] == 2**63


def test_a_forged_record_is_refused_alone_and_the_rest_of_the_update_kept() -> None:
    good = encode_record(record(2, 3))
    records, refused = decode_records([_enc(ver=MAX_UINT64), good, "junk", _enc(uid=-1)])
    assert records == (record(2, 3),)
    assert refused == 3


@pytest.mark.parametrize("obj", [None, {}, "x", [{}] * (MAX_RECORDS_PER_UPDATE + 1)])
def test_an_update_that_is_not_a_bounded_list_is_refused_whole(obj: object) -> None:
    with pytest.raises(TopologyDecodeError):
        decode_records(obj)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**70), max_value=2**70), st.integers(-(2**70), 2**70))
def test_decoded_versions_always_leave_room_to_be_incremented_and_re_encoded(ver: int,
                                                                             uid: int) -> None:
    try:
        rec = decode_record(_enc(ver=ver, uid=uid))
    except TopologyDecodeError:
        assert not (0 <= ver <= MAX_VERSION and 0 <= uid <= MAX_UINT64)
        return
    assert rec.version + 1 <= MAX_UINT64
    msgpack.packb(encode_record(replace(rec, version=rec.version + 1)))


# -- properties ------------------------------------------------------------------------------------

records_st = st.builds(
    lambda i, ver, uid, nick, links, est: PeerRecord(
        NAMES[i],
        nick,
        uid,
        ver,
        tuple(Connection(NAMES[j], f"h{j}:6783", est, j % 2 == 0) for j in sorted(links - {i})),
    ),
    st.integers(1, len(NAMES) - 1),  # never the local peer: its record is owned, not merged
    st.integers(0, 4),
    st.integers(1, 3),
    st.sampled_from(["a", "b"]),
    st.sets(st.integers(0, len(NAMES) - 1), max_size=4),
    st.booleans(),
)


def _merged(batches: list[list[PeerRecord]]) -> dict[PeerName, PeerRecord]:
    peers = Peers(LOCAL)
    for batch in batches:
        peers.merge(batch)
    return dict(peers.records())


@settings(max_examples=200, deadline=None)
@given(st.lists(records_st, max_size=12), st.randoms(use_true_random=False))
def test_merge_is_commutative_and_idempotent(recs: list[PeerRecord], rnd: random.Random) -> None:
    expected = _merged([recs])
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    duplicated = shuffled + rnd.sample(recs, len(recs) // 2)
    rnd.shuffle(duplicated)
    # one record per update, in a different order, some twice
    assert _merged([[r] for r in duplicated]) == expected
    # merging everything again changes nothing and reports nothing
    peers = Peers(LOCAL)
    peers.merge(recs)
    assert peers.merge(recs) == set()


@settings(max_examples=100, deadline=None)
@given(st.lists(records_st, max_size=8), st.lists(records_st, max_size=8))
def test_merge_result_is_the_greatest_record_per_peer(a: list[PeerRecord], b: list[PeerRecord]):
    merged = _merged([a, b])
    for name, rec in merged.items():
        if name == LOCAL.name:
            continue
        candidates = [r for r in a + b if r.name == name]
        assert rec == max(candidates, key=lambda r: (r.version, r.uid, r.nickname, r.connections))


def test_records_older_than_ours_are_reported_as_outdated_so_we_can_answer():
    from weavenet.mesh.peer import Peer, PeerName
    from weavenet.mesh.topology import Peers

    a = Peer(PeerName("02:00:00:00:00:0a"), "a", 1)
    b_old = Peer(PeerName("02:00:00:00:00:0b"), "b", 7)
    b_new = Peer(PeerName("02:00:00:00:00:0b"), "b", 8)
    holder, old_side, new_side = Peers(a), Peers(b_old), Peers(b_new)
    for _ in range(3):  # the old incarnation's record reaches a high version
        old_side.add_connection(a, "a:6783", outbound=True, established=True)
        old_side.remove_connection(a.name)
    holder.merge([old_side.local_record])
    fresh = new_side.local_record
    assert fresh.version < old_side.local_record.version
    assert holder.merge([fresh]) == set()  # rejected: lower version
    assert holder.outdated([fresh]) == {b_new.name}
    assert holder.outdated([old_side.local_record]) == set()  # the same record: nothing to say
    # answered, the new incarnation outranks its old record and wins everywhere
    assert new_side.merge(holder.update_for({b_new.name})) == {b_new.name}
    holder.merge([new_side.local_record])
    assert holder.get(b_new.name).uid == 8
