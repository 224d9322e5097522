import pytest

from weavenet.runtime.restart import RestartPolicy, RestartSettings


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def policy(rand=0.5, **kw):
    clock = FakeClock()
    return RestartPolicy(RestartSettings(**kw), clock=clock, rand=lambda: rand), clock


def test_backoff_grows_by_factor_from_base_without_jitter_at_midpoint():
    p, clock = policy(max_restarts=100)
    delays = []
    for _ in range(4):
        p.on_start()
        clock.t += 1
        delays.append(p.on_exit())
    assert delays == pytest.approx([0.05, 0.5, 0.75, 1.125])


def test_backoff_is_capped():
    p, clock = policy(max_restarts=100, cap=2.0)
    for _ in range(10):
        p.on_start()
        clock.t += 1
        d = p.on_exit()
    assert d == pytest.approx(2.0)


@pytest.mark.parametrize("rand,factor", [(0.0, 0.8), (1.0, 1.2)])
def test_jitter_stays_within_bounds(rand, factor):
    p, clock = policy(rand=rand)
    p.on_start()
    clock.t += 1
    assert p.on_exit() == pytest.approx(0.05 * factor)
    p.on_start()
    clock.t += 1
    assert p.on_exit() == pytest.approx(0.5 * factor)


def test_a_stable_run_resets_the_backoff():
    p, clock = policy(stable_after=10)
    for _ in range(3):
        p.on_start()
        clock.t += 1
        p.on_exit()
    p.on_start()
    clock.t += 11
    assert p.on_exit() == pytest.approx(0.05)


def test_too_many_restarts_in_the_window_marks_failed():
    p, clock = policy(max_restarts=3, window=60)
    results = []
    for _ in range(4):
        p.on_start()
        clock.t += 1
        results.append(p.on_exit())
    assert results[:3] == pytest.approx([0.05, 0.5, 0.75])
    assert results[3] is None and p.failed
    assert p.restarts == 3


def test_exits_spread_beyond_the_window_do_not_mark_failed():
    p, clock = policy(max_restarts=2, window=60, stable_after=1000)
    for _ in range(6):
        p.on_start()
        clock.t += 40
        assert p.on_exit() is not None
    assert not p.failed and p.restarts == 6
