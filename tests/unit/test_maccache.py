import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.frames_helper import mac
from weavenet.dataplane.maccache import Learned, MacCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def test_first_sighting_is_new_then_refreshed():
    cache, clock = MacCache(), FakeClock()
    assert cache.learn(mac(1), "A", clock.now) is Learned.NEW
    assert cache.learn(mac(1), "A", clock.advance(1)) is Learned.REFRESHED
    assert cache.lookup(mac(1), clock.now) == "A"
    assert cache.lookup(mac(2), clock.now) is None


def test_mac_moves_immediately_when_seen_at_another_peer():
    cache, clock = MacCache(), FakeClock()
    cache.learn(mac(1), "A", clock.now)
    assert cache.learn(mac(1), "B", clock.advance(0.001)) is Learned.MOVED
    assert cache.lookup(mac(1), clock.now) == "B"
    assert len(cache) == 1


def test_entries_expire_after_max_age_without_traffic():
    cache, clock = MacCache(max_age=600), FakeClock()
    cache.learn(mac(1), "A", clock.now)
    cache.learn(mac(2), "B", clock.now)
    clock.advance(500)
    cache.learn(mac(2), "B", clock.now)  # mac(2) keeps talking
    clock.advance(101)
    assert cache.lookup(mac(1), clock.now) is None
    assert cache.lookup(mac(2), clock.now) == "B"


def test_expire_sweeps_and_reports_stale_entries():
    cache, clock = MacCache(max_age=10), FakeClock()
    cache.learn(mac(1), "A", clock.now)
    cache.learn(mac(2), "B", clock.advance(5))
    assert cache.expire(clock.advance(6)) == [(mac(1), "A")]
    assert mac(1) not in cache and mac(2) in cache


def test_deleting_a_peer_forgets_only_its_macs():
    cache, clock = MacCache(), FakeClock()
    for i, peer in enumerate("ABAB"):
        cache.learn(mac(i), peer, clock.now)
    assert sorted(cache.delete_peer("A")) == [mac(0), mac(2)]
    assert cache.lookup(mac(0), clock.now) is None
    assert cache.lookup(mac(1), clock.now) == "B"
    assert len(cache) == 2


def test_size_bound_prefers_expired_entries_then_oldest():
    cache, clock = MacCache(max_age=10, max_entries=3), FakeClock()
    cache.learn(mac(1), "A", clock.now)
    cache.learn(mac(2), "A", clock.advance(8))
    cache.learn(mac(3), "A", clock.now)
    cache.learn(mac(4), "A", clock.advance(3))  # mac(1) is stale: it goes, nothing else
    assert {m for m, _, _ in cache.items()} == {mac(2), mac(3), mac(4)}
    assert cache.evictions == 0
    cache.learn(mac(5), "A", clock.now)  # nothing stale: the oldest insertion goes
    assert {m for m, _, _ in cache.items()} == {mac(3), mac(4), mac(5)}
    assert cache.evictions == 1


def test_entry_exposes_last_seen_for_freshness_policies():
    cache, clock = MacCache(), FakeClock()
    cache.learn(mac(1), "A", clock.now)
    assert cache.entry(mac(1)) == ("A", clock.now)
    assert cache.entry(mac(2)) is None


def test_rejects_nonsense_configuration():
    with pytest.raises(ValueError):
        MacCache(max_age=0)


@given(
    st.lists(st.tuples(st.integers(0, 20), st.sampled_from("ABC"), st.floats(0, 50)), max_size=200)
)
def test_cache_agrees_with_a_model_and_never_exceeds_its_bound(events):
    cache = MacCache(max_age=30, max_entries=8)
    model: dict[bytes, tuple[str, float]] = {}
    now = 0.0
    for n, peer, dt in events:
        now += dt
        cache.learn(mac(n), peer, now)
        model[mac(n)] = (peer, now)
        assert len(cache) <= 8
        assert cache.lookup(mac(n), now) == peer
        for m, (p, seen) in model.items():
            got = cache.lookup(m, now)
            # an entry may have been evicted for room, but never reports the wrong peer
            assert got in (None, p) if now - seen <= 30 else got is None
