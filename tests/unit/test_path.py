"""A neighbour's UDP path: liveness from heartbeats, the learned address, PMTU restarts."""

from __future__ import annotations

from weavenet.dataplane.path import (
    DEFAULT_DATAGRAM,
    MIN_CEILING,
    PATH_OK_FOR,
    PROBING_FOR,
    Path,
    ceiling_for,
    describe_paths,
    reconcile,
)
from weavenet.dataplane.pmtu import PathMtu
from weavenet.dataplane.sleeve import FRAG_TEST, MAX_DATAGRAM

GOSSIPED = ("192.0.2.1", 6783)
NATTED = ("198.51.100.7", 40001)


class Clock:
    """A fake monotonic clock the tests move by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def ceiling(_addr: tuple[str, int]) -> int:
    return 1472


def test_a_new_path_is_probing_then_unreachable_if_never_heard() -> None:
    clock = Clock()
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, clock.now)
    assert path.state(clock.now) == "probing"
    assert path.state(clock.advance(PROBING_FOR)) == "unreachable"


def test_a_heartbeat_brings_the_path_up_once_and_silence_takes_it_down() -> None:
    clock = Clock()
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, clock.now)
    assert path.heard(GOSSIPED, clock.now, ceiling) is True
    assert path.state(clock.now) == "ok"
    assert path.heard(GOSSIPED, clock.advance(1.0), ceiling) is False
    assert path.state(clock.advance(PATH_OK_FOR)) == "ok"
    assert path.state(clock.advance(0.01)) == "unreachable"
    assert path.heard(GOSSIPED, clock.now, ceiling) is True


def test_pmtu_discovery_restarts_when_the_path_reappears_but_not_while_it_stays_up() -> None:
    clock = Clock()
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, clock.now)
    path.heard(GOSSIPED, clock.now, ceiling)
    first = path.pmtu
    assert isinstance(first, PathMtu) and first.ceiling == 1472
    path.heard(GOSSIPED, clock.advance(1.0), ceiling)
    assert path.pmtu is first
    path.heard(GOSSIPED, clock.advance(PATH_OK_FOR + 1), ceiling)
    assert path.pmtu is not first


def test_the_address_the_neighbours_packets_show_beats_what_gossip_said() -> None:
    clock = Clock()
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, clock.now)
    path.heard(GOSSIPED, clock.now, ceiling)
    first = path.pmtu
    path.heard(NATTED, clock.advance(0.5), ceiling)
    assert (path.addr, path.learned, path.configured) == (NATTED, NATTED, GOSSIPED)
    assert path.pmtu is not first  # another address is another path
    path.set_configured(("192.0.2.9", 6783))
    assert path.addr == NATTED


def test_gossip_configures_the_address_until_one_is_learned() -> None:
    path = Path("aa:00:00:00:00:01", 1, None, 0.0)
    assert path.addr is None
    path.set_configured(GOSSIPED)
    assert path.addr == GOSSIPED


def test_traffic_keeps_a_live_path_up_but_never_brings_one_up() -> None:
    clock = Clock()
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, clock.now)
    path.traffic(clock.now)
    assert path.last_heard is None
    path.heard(GOSSIPED, clock.now, ceiling)
    path.traffic(clock.advance(PATH_OK_FOR))
    assert path.state(clock.advance(PATH_OK_FOR)) == "ok"


def test_before_discovery_datagrams_fit_a_1500_byte_underlay() -> None:
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, 0.0)
    assert path.piece_size == path.max_datagram == DEFAULT_DATAGRAM == 1472
    assert path.describe(0.0) == {"state": "probing", "pmtu": 1472, "frag_ok": False}


def test_the_ceiling_is_the_route_mtu_less_ip_and_udp_headers_within_bounds() -> None:
    assert ceiling_for(1500) == 1472
    assert ceiling_for(9000) == 8972
    assert ceiling_for(70000) == MAX_DATAGRAM
    assert ceiling_for(100) == MIN_CEILING


def test_only_a_live_path_is_probed() -> None:
    clock = Clock()
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, clock.now)
    assert path.due_probes(clock.now) == []
    path.heard(GOSSIPED, clock.now, ceiling)
    assert FRAG_TEST in {p.kind for p in path.due_probes(clock.now)}
    assert path.due_probes(clock.advance(PATH_OK_FOR + 1)) == []


def test_a_probe_the_kernel_refuses_lowers_the_estimate() -> None:
    path = Path("aa:00:00:00:00:01", 1, GOSSIPED, 0.0)
    path.too_big(1400, 0.0)  # before discovery: nothing to lower
    path.heard(GOSSIPED, 0.0, ceiling)
    path.too_big(1400, 0.0)
    assert path.piece_size < 1400


def test_reconcile_keeps_known_paths_adds_new_ones_and_forgets_the_rest() -> None:
    clock = Clock()
    paths: dict[int, Path] = {}
    reconcile(paths, {1: ("aa:00:00:00:00:01", GOSSIPED), 2: ("aa:00:00:00:00:02", None)},
              clock.now)
    kept = paths[1]
    kept.heard(NATTED, clock.now, ceiling)
    reconcile(paths, {1: ("aa:00:00:00:00:01", ("192.0.2.9", 6783)),
                      3: ("aa:00:00:00:00:03", None)}, clock.advance(1.0))
    assert sorted(paths) == [1, 3]
    assert paths[1] is kept and kept.addr == NATTED and kept.configured == ("192.0.2.9", 6783)
    assert paths[3].since == clock.now


def test_describe_paths_names_each_path_and_adds_addresses_for_status() -> None:
    paths = [Path("aa:00:00:00:00:01", 1, GOSSIPED, 0.0), Path("aa:00:00:00:00:02", 2, None, 0.0)]
    assert describe_paths(paths, 0.0)["aa:00:00:00:00:01"] == {
        "state": "probing", "pmtu": 1472, "frag_ok": False}
    status = describe_paths(paths, 0.0, with_addr=True)
    assert status["aa:00:00:00:00:01"]["addr"] == "192.0.2.1:6783"
    assert status["aa:00:00:00:00:02"]["addr"] is None
