"""Seeing the network on three lab hosts: the router's Prometheus metrics agree with `weave
status`, a cut link shows up in both with its reason, and the topology page, opened in a real
headless Chromium inside a lab host's namespace, shows the peers and edges and follows a cut
without reloading.

Everything HTTP is fetched from inside the lab host's namespace (its loopback, where the router
listens on 127.0.0.1:6782), never from the test's own namespace.
"""

from __future__ import annotations

import importlib.util
import json
import select
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import launch_mesh, wait_for, weave, weave_result
from weavenet.lab import Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]

URL = "http://127.0.0.1:6782"
FETCH = """
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
try:
    with urllib.request.urlopen(req, timeout=10) as res:
        code, body = res.status, res.read()
except urllib.error.HTTPError as exc:
    code, body = exc.code, exc.read()
sys.stdout.write(f"{code}\\n" + body.decode())
"""


@pytest.fixture(scope="module")
def net(lab3: Lab):
    names = launch_mesh(lab3.hosts)
    for h in lab3.hosts:
        wait_for(lambda h=h: status_states(h) == {"established": 2}, 30,
                 f"{h.name}'s two connections to be established")
    return lab3, names


def http(host, path: str, method: str = "GET") -> tuple[int, str]:
    """One request to the router's HTTP server, made inside the host's namespace."""
    out = host.run([sys.executable, "-c", FETCH, URL + path, method], timeout=30).stdout
    code, _, body = out.partition("\n")
    return int(code), body


def metrics(host) -> dict[str, list[Any]]:
    code, text = http(host, "/metrics")
    assert code == 200, text
    return {fam.name: fam.samples for fam in text_string_to_metric_families(text)}


def metric_states(host) -> Counter[str]:
    # summed: one state has a sample per (path, encrypted), e.g. fastdp and sleeve
    states: Counter[str] = Counter()
    for s in metrics(host)["weave_connections"]:
        states[s.labels["state"]] += int(s.value)
    return +states


def connection_rows(host) -> list[dict[str, str]]:
    """`weave status connections` as rows (REASON is the rest of the line)."""
    lines = weave(host, "status", "connections").splitlines()
    head = lines[0].split()
    rows = []
    for line in lines[1:]:
        cols = line.split(None, len(head) - 1)
        rows.append(dict(zip(head, cols + [""] * (len(head) - len(cols)), strict=True)))
    return rows


def status_states(host) -> Counter[str]:
    return Counter(r["STATE"] for r in connection_rows(host))


def test_metrics_parse_and_their_connection_counts_match_weave_status(net) -> None:
    lab, names = net
    for h in lab.hosts:
        assert metric_states(h) == status_states(h) == {"established": 2}
    def info_when_fastdp() -> dict | None:  # the lab hosts reach each other: fastdp (issue 10)
        m = metrics(lab.hosts[0])
        info = {s.labels["peer"]: s.labels for s in m["weave_connection_info"]}
        return info if {x["path"] for x in info.values()} == {"fastdp"} else None

    info = wait_for(info_when_fastdp, 20, "every connection on fastdp in the metrics")
    assert set(info) == {names["host2"], names["host3"]}
    m = metrics(lab.hosts[0])
    assert {s.labels["actor"] for s in m["weave_actor_up"] if s.value == 1} == {
        "netconf", "capture", "crypto", "forwarder", "gossip"}
    assert {s.labels["peer"] for s in m["weave_path_mtu_bytes"]} == {names["host2"],
                                                                   names["host3"]}
    assert any(s.value > 0 for s in m["weave_gossip_messages"])
    code, body = http(lab.hosts[0], "/report")
    assert code == 200 and json.loads(body)["router"]["peer"]["name"] == names["host1"]
    report = json.loads(weave(lab.hosts[0], "report"))
    assert {c["peer"] for c in report["connections"]} == {names["host2"], names["host3"]}
    peers = json.loads(weave(lab.hosts[0], "status", "peers", "--json"))
    assert [p["nickname"] for p in peers if p["us"]] == ["host1"] and len(peers) == 3


def test_a_bad_status_address_is_a_usage_error(net) -> None:
    lab, _ = net
    r = weave_result(lab.hosts[0], "launch", "--status-addr", "127.0.0.1:http")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "status address" in r.stderr


def test_the_http_server_refuses_what_would_change_state(net) -> None:
    lab, _ = net
    for method in ("POST", "PUT", "DELETE"):
        code, _ = http(lab.hosts[0], "/status", method)
        assert code == 405
    assert status_states(lab.hosts[0]) == {"established": 2}


def failing_row(host, address_host: str) -> dict[str, str] | None:
    for r in connection_rows(host):
        if r["ADDRESS"].startswith(address_host + ":") and r["STATE"] != "established" \
                and r["REASON"]:
            return r
    return None


def test_a_cut_link_shows_in_status_and_metrics_with_its_reason(net) -> None:
    lab, names = net
    h1, _, h3 = lab.hosts
    lab.cut(h1, h3)
    try:
        def both_say_so() -> tuple[dict, dict] | None:
            row = failing_row(h1, h3.ip)
            if row is None:
                return None
            for s in metrics(h1)["weave_connection_info"]:
                if (s.labels["address"], s.labels["state"], s.labels["reason"]) == (
                        row["ADDRESS"], row["STATE"], row["REASON"]):
                    return row, s.labels
            return None

        row, labels = wait_for(both_say_so, 20, "host1's status and metrics to show the cut "
                               "connection with its reason")
        assert row["STATE"] in ("connected", "retrying", "failed")
        assert labels["path"] == "none"
        assert metric_states(h1)[row["STATE"]] >= 1
        # once its silence outlasts the TCP timeout the connection is terminated and counted
        wait_for(lambda: any(s.labels["kind"] == "silence" and s.value >= 1
                             for s in metrics(h1)["weave_connection_terminations"]), 30,
                 "host1 to count the silent connection's termination")
    finally:
        lab.heal(h1, h3)
    wait_for(lambda: status_states(h1) == {"established": 2}, 60, "host1 to reconnect to host3")


class Browser:
    """tests/e2e/browser.py on a lab host: a headless Chromium in that host's namespace."""

    def __init__(self, host, url: str, profile: Path) -> None:
        missing = [t for t in ("chromium", "chromedriver") if shutil.which(t) is None]
        if missing or importlib.util.find_spec("selenium") is None:
            pytest.skip(f"needs {', '.join(missing) or 'selenium'} (bash .ci/install)")
        script = Path(__file__).with_name("browser.py")
        env = {**host.env(), "HOME": str(profile)}
        self.proc = host.popen([sys.executable, str(script), url, str(profile / "chromium")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=env)
        first = self._read(90)
        assert first.get("ready"), first

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "the browser did not answer"
        line = self.proc.stdout.readline()
        assert line, f"the browser exited ({self.proc.poll()})"
        return json.loads(line)

    def ask(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read(30)

    def close(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def edge_states(page: dict[str, Any]) -> dict[frozenset[str], str]:
    return {frozenset((e["a"], e["b"])): e["state"] for e in page["edges"]}


def test_the_topology_page_in_a_real_browser_follows_a_cut(net, tmp_path: Path) -> None:
    lab, names = net
    h1, h2, h3 = lab.hosts
    n1, n2, n3 = names["host1"], names["host2"], names["host3"]
    browser = Browser(h1, URL + "/", tmp_path)
    try:
        def settled() -> dict[str, Any] | None:
            page = browser.ask("state")
            edges = edge_states(page)
            ok = edges == {frozenset((n1, n2)): "established",
                           frozenset((n1, n3)): "established",
                           frozenset((n2, n3)): "established"}
            return page if ok and len(page["nodes"]) == 3 else None

        page = wait_for(settled, 20, "the page to show three peers and three established edges")
        assert {(n["name"], n["nickname"], n["us"]) for n in page["nodes"]} == {
            (n1, "host1", True), (n2, "host2", False), (n3, "host3", False)}
        assert {e["path"] for e in page["edges"] if n1 in (e["a"], e["b"])} == {"fastdp"}
        assert browser.ask("screenshot", path=str(tmp_path / "topology.png"))["saved"]
        before = page["refreshes"]
        lab.cut(h1, h3)
        try:
            page = wait_for(lambda: (p := browser.ask("state")) and edge_states(p).get(
                frozenset((n1, n3)), "established") != "established" and p, 20,
                "the host1-host3 edge to change state on the page")
            assert page["same_page"] and page["refreshes"] > before  # redrawn, not reloaded
            assert edge_states(page)[frozenset((n1, n2))] == "established"
            assert browser.ask("screenshot", path=str(tmp_path / "topology-cut.png"))["saved"]
        finally:
            lab.heal(h1, h3)
    finally:
        browser.close()
    print(f"screenshots in {tmp_path}")


@pytest.mark.parametrize("n", [6, 12, 50])
def test_the_page_stays_readable_at_50_peers(lab_factory, tmp_path: Path, n: int) -> None:
    """The real page and server, fed a made-up status of n peers (no routers): every peer is
    drawn, no two labels overlap, and the text is not shrunk below 9 px. 6 is the most peers
    drawn with labelled edges, 12 with two-line labels, 50 the most the page promises."""
    (host,) = lab_factory(1, docker=False).hosts
    root = Path(__file__).resolve().parents[2]
    fake = host.popen([sys.executable, str(root / "tests/e2e/many_peers.py"), str(n)],
                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                      env={**host.env(), "PYTHONPATH": str(root)}, cwd=root)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        browser = Browser(host, URL + "/", tmp_path)
        try:
            page = wait_for(lambda: (p := browser.ask("state")) and len(p["nodes"]) == n and p,
                            20, f"the page to draw {n} peers")
            assert sum(x["us"] for x in page["nodes"]) == 1 and len(page["edges"]) > n
            assert browser.ask("screenshot", path=str(tmp_path / f"{n}-peers.png"))["saved"]
            looks = browser.ask("overlaps")
            assert looks["labels"] >= n and looks["overlapping"] == [], looks
            assert looks["min_height"] >= 9, looks
        finally:
            browser.close()
    finally:
        if fake.stdin is not None:
            fake.stdin.close()
        fake.wait(10)
    print(f"screenshot in {tmp_path}")
