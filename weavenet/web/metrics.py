"""The report (``weavenet.cli.report``) as Prometheus metrics, with ``prometheus_client``.

A custom collector: every scrape fetches one fresh report and maps it, so nothing here keeps
state of its own and the numbers are exactly the ones ``weave report`` shows. Names follow the
Prometheus conventions: the ``weave_`` prefix, counters end in ``_total`` (the library adds it),
sizes in bytes, times in seconds. Labels take only values from small fixed sets (states, kinds,
reasons the code names) or one per peer or connection, except ``weave_connection_info``'s
``reason``, which says why one listed connection is failing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# (report counters key, direction, path) -> frames and bytes counted there
FRAME_COUNTERS = (  # path "bridge": the TAP on the weave bridge, where containers' frames are
    ("capture", "rx", "bridge", "rx", "rx_bytes"),  # capture reads the TAP,
    ("forwarder", "tx", "bridge", "injected", "injected_bytes"),  # the forwarder writes it
    ("forwarder", "rx", "sleeve", "rx", "rx_bytes"),
    ("forwarder", "tx", "sleeve", "tx", "tx_bytes"),
)
# with encryption the crypto actor sends the sealed datagrams: sleeve tx counts are the sum
SLEEVE_SENDERS = ("forwarder", "crypto")


def families(report: dict[str, Any]) -> Iterator[Metric]:
    """Every metric of one report."""
    router = report.get("router", {})
    me = router.get("peer", {})
    info = GaugeMetricFamily("weave_router_info", "The router's version and identity (value 1).",
                             labels=["version", "peer", "nickname", "encryption"])
    info.add_metric([str(report.get("version")), str(me.get("name")), str(me.get("nickname")),
                     "on" if router.get("encryption") else "off"], 1)
    yield info
    yield GaugeMetricFamily("weave_router_uptime_seconds", "Seconds since the router started.",
                            value=float(router.get("uptime") or 0))
    yield GaugeMetricFamily("weave_peers", "Peers reachable in the topology, this one included.",
                            value=len(report.get("peers", [])))
    yield from _connections(report.get("connections", []))
    terms = CounterMetricFamily("weave_connection_terminations",
                                "Connections that ended or dials that failed, by kind.",
                                labels=["kind"])
    for kind, n in sorted(report.get("gossip", {}).get("terminations", {}).items()):
        terms.add_metric([kind], n)
    yield terms
    yield from _traffic(report.get("counters", {}))
    yield from _paths(report.get("paths", {}))
    yield GaugeMetricFamily("weave_macs", "MAC addresses the forwarder has learned.",
                            value=report.get("macs", 0))
    yield GaugeMetricFamily("weave_attachments", "Containers attached to the weave network.",
                            value=len(report.get("attachments", [])))
    yield GaugeMetricFamily("weave_exposed_addresses", "Addresses given to the host by "
                            "`weave expose`.", value=len(report.get("exposed", [])))
    yield from _actors(report.get("actors", []))
    yield from _gossip(report.get("gossip", {}))


def _connections(conns: list[dict[str, Any]]) -> Iterator[Metric]:
    by = Counter((c.get("state", ""), c.get("path") or "none",
                  "yes" if c.get("encrypted") else "no") for c in conns)
    total = GaugeMetricFamily("weave_connections", "Connections to peers, by state, data path "
                              "(none: carries no frames) and encryption.",
                              labels=["state", "path", "encrypted"])
    for key, n in sorted(by.items()):
        total.add_metric(list(key), n)
    yield total
    each = GaugeMetricFamily("weave_connection_info", "One series per connection (value 1), "
                             "with the reason when it is not carrying traffic.",
                             labels=["address", "peer", "nickname", "direction", "state", "path",
                                      "encrypted", "reason"])
    for c in conns:
        each.add_metric([c.get("address", ""), c.get("peer") or "", c.get("nickname") or "",
                         c.get("direction") or "", c.get("state", ""), c.get("path") or "none",
                         "yes" if c.get("encrypted") else "no", c.get("reason") or ""], 1)
    yield each


def _traffic(counters: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    frames = CounterMetricFamily("weave_frames", "Ethernet frames, by direction and path "
                                 "(bridge: to and from local containers; sleeve: UDP to peers).",
                                 labels=["direction", "path"])
    size = CounterMetricFamily("weave_bytes", "Bytes of those frames (sleeve: of the UDP "
                               "datagrams), by direction and path.", labels=["direction", "path"])
    for actor, direction, path, n_key, b_key in FRAME_COUNTERS:
        c = counters.get(actor, {})
        frames.add_metric([direction, path], c.get(n_key, 0))
        nbytes = _sleeve_tx(counters, b_key) if (path, direction) == ("sleeve", "tx") \
            else c.get(b_key, 0)
        size.add_metric([direction, path], nbytes)
    yield frames
    yield size
    datagrams = CounterMetricFamily("weave_sleeve_datagrams", "UDP datagrams of the sleeve, by "
                                    "direction.", labels=["direction"])
    fw = counters.get("forwarder", {})
    datagrams.add_metric(["rx"], fw.get("rx_datagrams", 0))
    datagrams.add_metric(["tx"], _sleeve_tx(counters, "tx_datagrams"))
    yield datagrams
    drops = CounterMetricFamily("weave_dropped_frames", "Frames or datagrams dropped, by the "
                                "actor that dropped them and why.", labels=["actor", "reason"])
    for actor in sorted(counters):
        for reason, n in sorted((counters[actor].get("drops") or {}).items()):
            drops.add_metric([actor, reason], n)
    yield drops


def _sleeve_tx(counters: dict[str, dict[str, Any]], key: str) -> int:
    return sum(counters.get(actor, {}).get(key, 0) for actor in SLEEVE_SENDERS)


def _paths(paths: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    mtu = GaugeMetricFamily("weave_path_mtu_bytes", "The largest UDP datagram the path to each "
                            "neighbour carries whole.", labels=["peer"])
    state = GaugeMetricFamily("weave_path_up", "1 while the UDP path to a neighbour answers "
                              "heartbeats.", labels=["peer", "state"])
    sent = CounterMetricFamily("weave_path_sent_frames", "Frames sent on the UDP path to each "
                               "neighbour (the next hop, not the destination).", labels=["peer"])
    for peer, p in sorted(paths.items()):
        if p.get("pmtu") is not None:
            mtu.add_metric([peer], p["pmtu"])
        state.add_metric([peer, str(p.get("state"))], 1 if p.get("state") == "ok" else 0)
        sent.add_metric([peer], p.get("tx_frames", 0))
    yield mtu
    yield state
    yield sent


def _actors(actors: list[dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily("weave_actor_up", "1 while the actor process is running.",
                           labels=["actor", "state"])
    restarts = CounterMetricFamily("weave_actor_restarts", "Restarts of each actor process.",
                                   labels=["actor"])
    for a in actors:
        up.add_metric([a["name"], str(a.get("state"))], 1 if a.get("state") == "running" else 0)
        restarts.add_metric([a["name"]], a.get("restarts") or 0)
    yield up
    yield restarts


def _gossip(gossip: dict[str, Any]) -> Iterator[Metric]:
    messages = CounterMetricFamily("weave_gossip_messages", "Peer-protocol messages after the "
                                   "handshake, by direction and type.",
                                   labels=["direction", "type"])
    for direction in ("rx", "tx"):
        for kind, n in sorted(gossip.get("messages", {}).get(direction, {}).items()):
            messages.add_metric([direction, kind], n)
    yield messages
    yield CounterMetricFamily("weave_gossip_refused_records", "Gossiped peer records the "
                              "decoder refused.", value=gossip.get("refused_records", 0))


class ReportCollector(Collector):
    """Collects ``families(fetch())`` on every scrape."""

    def __init__(self, fetch: Callable[[], dict[str, Any]]) -> None:
        self.fetch = fetch

    def collect(self) -> Iterator[Metric]:
        yield from families(self.fetch())
