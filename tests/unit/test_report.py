"""`weave report` and the focused views of `weave status peers | connections | routes`."""

from __future__ import annotations

import json

import pytest

from tests.unit.status_helper import DOWN, H2, H3, US, sample_status
from weavenet.cli.main import main
from weavenet.cli.report import build_report
from weavenet.cli.statusview import format_connections, format_peers, format_routes

REPORT_KEYS = {"version", "router", "peers", "connections", "routes", "paths", "macs",
               "attachments", "exposed", "actors", "counters", "gossip"}


def test_the_report_regroups_the_status_by_what_operators_ask_about() -> None:
    r = build_report(sample_status())
    assert set(r) == REPORT_KEYS
    assert r["router"]["peer"] == {"name": US, "nickname": "host1", "uid": 7}
    assert [p["nickname"] for p in r["peers"] if p["us"]] == ["host1"]
    assert r["routes"] == {H2: H2, H3: H2}
    assert r["macs"] == 6 and len(r["attachments"]) == 1
    assert r["actors"][3] == {"name": "forwarder", "state": "running", "pid": 100,
                              "uptime": 9.0, "restarts": 1, "last_exit": "killed by signal 9"}
    assert "status" not in r["actors"][0]  # the actors' own views are regrouped, not repeated
    assert r["counters"]["capture"]["rx_bytes"] == 1212
    assert r["gossip"]["terminations"] == {"silence": 1, "dial_failed": 3}
    json.dumps(r)  # one JSON document


def test_a_connection_takes_its_path_and_mtu_only_while_it_carries_frames() -> None:
    conns = {c["address"]: c for c in build_report(sample_status())["connections"]}
    up = conns["198.18.0.2:39596"]
    assert (up["state"], up["path"], up["mtu"], up["direction"], up["encrypted"],
            up["reason"]) == ("established", "sleeve", 1472, "inbound", True, None)
    tcp_only = conns["198.18.0.3:46904"]
    assert (tcp_only["state"], tcp_only["path"], tcp_only["mtu"], tcp_only["reason"]) == (
        "connected", None, None, DOWN)
    failing = conns["198.18.0.9:6783"]
    assert (failing["state"], failing["reason"]) == ("retrying", "connect timed out")


def test_a_report_of_a_router_still_starting_has_every_key() -> None:
    st = {"version": "0.1.0", "actors": [{"name": "gossip", "state": "starting", "pid": 1,
                                          "uptime": 0.1, "restarts": 0, "last_exit": "",
                                          "status": {}}]}
    r = build_report(st)
    assert set(r) == REPORT_KEYS
    assert (r["peers"], r["connections"], r["routes"], r["macs"]) == ([], [], {}, 0)


def test_peers_view_marks_us() -> None:
    lines = format_peers(build_report(sample_status())).splitlines()
    assert lines[0].split() == ["NAME", "NICKNAME", "CONNECTIONS"]
    us = [x for x in lines if x.startswith(US)]
    assert us and us[0].split() == [US, "host1", "2", "(us)"]
    assert not any("(us)" in x for x in lines if not x.startswith(US))


def test_connections_view_shows_direction_state_path_encryption_mtu_and_reason() -> None:
    lines = format_connections(build_report(sample_status())).splitlines()
    assert lines[0].split() == ["DIRECTION", "ADDRESS", "PEER", "STATE", "PATH", "ENCRYPTED",
                                "MTU", "REASON"]
    assert lines[1].split() == ["inbound", "198.18.0.2:39596", f"{H2}(host2)", "established",
                                "sleeve", "yes", "1472"]
    assert lines[2].split()[:7] == ["inbound", "198.18.0.3:46904", f"{H3}(host3)", "connected",
                                    "-", "yes", "-"]
    assert lines[2].endswith(DOWN)
    assert lines[3].split()[:4] == ["outbound", "198.18.0.9:6783", "-", "retrying"]
    assert lines[3].endswith("connect timed out")


def test_routes_view_names_the_next_hop() -> None:
    lines = format_routes(build_report(sample_status())).splitlines()
    assert lines[0].split() == ["DESTINATION", "NICKNAME", "VIA", "VIA", "NICKNAME"]
    assert lines[1].split() == [H2, "host2", H2, "direct"]
    assert lines[2].split() == [H3, "host3", H2, "host2"]


@pytest.mark.parametrize("argv", [["status", "bogus"], ["status", "peers", "extra"],
                                  ["report", "--bogus"]])
def test_a_bad_view_is_one_line_and_exit_2(argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and err.startswith("weave: ")
