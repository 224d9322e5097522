"""The report as Prometheus metrics: names, labels and values, read back with
prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.status_helper import DOWN, H2, H3, sample_status
from weavenet.cli.report import build_report
from weavenet.web.metrics import ReportCollector


def scrape(status: dict) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(lambda: build_report(status)))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def by_name(samples: dict, name: str) -> dict[tuple, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_names_follow_the_prometheus_conventions() -> None:
    names = {n for n, _ in scrape(sample_status())}
    assert all(n.startswith("weave_") for n in names)
    for counter in ("weave_frames_total", "weave_bytes_total", "weave_dropped_frames_total",
                    "weave_connection_terminations_total", "weave_actor_restarts_total",
                    "weave_gossip_messages_total", "weave_path_sent_frames_total"):
        assert counter in names
    assert "weave_path_mtu_bytes" in names and "weave_router_uptime_seconds" in names


def test_connections_are_counted_by_state_path_and_encryption() -> None:
    got = by_name(scrape(sample_status()), "weave_connections")
    assert got == {
        (("encrypted", "yes"), ("path", "sleeve"), ("state", "established")): 1,
        (("encrypted", "yes"), ("path", "none"), ("state", "connected")): 1,
        (("encrypted", "no"), ("path", "none"), ("state", "retrying")): 1,
    }


def test_each_connection_is_listed_with_its_reason() -> None:
    got = by_name(scrape(sample_status()), "weave_connection_info")
    rows = {dict(labels)["address"]: dict(labels) for labels in got}
    assert rows["198.18.0.3:46904"]["state"] == "connected"
    assert rows["198.18.0.3:46904"]["reason"] == DOWN
    assert rows["198.18.0.3:46904"]["peer"] == H3
    assert rows["198.18.0.9:6783"]["reason"] == "connect timed out"
    assert rows["198.18.0.2:39596"]["reason"] == ""


def test_traffic_drops_paths_and_actors() -> None:
    s = scrape(sample_status())
    frames = by_name(s, "weave_frames_total")
    assert frames[(("direction", "rx"), ("path", "sleeve"))] == 18
    assert frames[(("direction", "tx"), ("path", "bridge"))] == 18
    assert by_name(s, "weave_bytes_total")[(("direction", "rx"), ("path", "bridge"))] == 1212
    assert by_name(s, "weave_bytes_total")[(("direction", "tx"), ("path", "bridge"))] == 1636
    assert by_name(s, "weave_sleeve_datagrams_total")[(("direction", "tx"),)] == 8
    drops = by_name(s, "weave_dropped_frames_total")
    assert drops == {(("actor", "capture"), ("reason", "queue_full")): 2,
                     (("actor", "forwarder"), ("reason", "no_peers")): 3}
    assert by_name(s, "weave_path_mtu_bytes") == {(("peer", H2),): 1472, (("peer", H3),): 1400}
    assert by_name(s, "weave_path_up") == {(("peer", H2), ("state", "ok")): 1,
                                           (("peer", H3), ("state", "unreachable")): 0}
    assert by_name(s, "weave_path_sent_frames_total")[(("peer", H2),)] == 8
    assert by_name(s, "weave_actor_restarts_total")[(("actor", "forwarder"),)] == 1
    assert by_name(s, "weave_actor_up")[(("actor", "gossip"), ("state", "running"))] == 1
    assert by_name(s, "weave_macs")[()] == 6
    assert by_name(s, "weave_attachments")[()] == 1
    assert by_name(s, "weave_peers")[()] == 3


def test_gossip_messages_and_terminations() -> None:
    s = scrape(sample_status())
    msgs = by_name(s, "weave_gossip_messages_total")
    assert msgs[(("direction", "tx"), ("type", "Goodbye"))] == 1
    assert msgs[(("direction", "rx"), ("type", "TopologyUpdate"))] == 15
    assert by_name(s, "weave_connection_terminations_total") == {
        (("kind", "dial_failed"),): 3, (("kind", "silence"),): 1}


def test_a_failed_actor_is_down() -> None:
    st = sample_status()
    st["actors"][1] = {**st["actors"][1], "state": "failed", "pid": None, "restarts": 6}
    s = scrape(st)
    assert by_name(s, "weave_actor_up")[(("actor", "capture"), ("state", "failed"))] == 0
    assert by_name(s, "weave_actor_restarts_total")[(("actor", "capture"),)] == 6


def test_nothing_secret_is_exported() -> None:
    text = str(scrape(sample_status()))
    assert "password" not in text.lower() and "secret" not in text.lower()


def test_sealed_datagrams_sent_by_crypto_count_in_the_sleeves_tx() -> None:
    status = sample_status()
    for a in status["actors"]:
        if a["name"] == "crypto":
            a["status"]["counters"].update(tx_datagrams=5, tx_bytes=7000, dropped=1,
                                           drops={"send_failed": 1})
    s = scrape(status)
    assert by_name(s, "weave_sleeve_datagrams_total")[(("direction", "tx"),)] == 8 + 5
    assert by_name(s, "weave_bytes_total")[(("direction", "tx"), ("path", "sleeve"))] == \
        1188 + 7000
    assert by_name(s, "weave_dropped_frames_total")[
        (("actor", "crypto"), ("reason", "send_failed"))] == 1


def test_status_shows_crypto_counters_when_encrypting() -> None:
    from weavenet.cli.statusview import format_status

    status = sample_status()
    assert "\nCrypto: sealed 4\n" in format_status(status)
    status["encryption"] = False
    assert "Crypto:" not in format_status(status)
