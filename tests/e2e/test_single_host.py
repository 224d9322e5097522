"""One lab host with its own dockerd: the single-host weave session, every line checked, with the
router as host processes and as its container."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import start_lab, stop_lab
from tests.support import container_pings, host_pings, weave, weave_result
from weavenet.lab import Host

pytestmark = [pytest.mark.root, pytest.mark.docker]


def containers(host: Host) -> set[str]:
    return {c.id for c in host.docker().containers.list(all=True)}


def one_line_error(r, code: int, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module", params=["process", "container"])
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    """The host, its router run either way (`weave launch`'s default follows the image)."""
    image = request.getfixturevalue("router_image") if request.param == "container" else None
    lab = start_lab(1, router_image=image)
    try:
        h = lab.hosts[0]
        assert h.router == request.param
        yield h
        h.run(["weave", "reset"], check=False)
    finally:
        stop_lab(lab)


@pytest.fixture(scope="module")
def app(host: Host) -> dict[str, str]:
    weave(host, "launch", "10.0.0.1/16")
    ids = {}
    for name, cidr in (("A", "10.0.1.1/24"), ("B", "10.0.1.2/24"), ("D", "10.0.2.1/24")):
        out = weave(host, "run", cidr, "-t", "-i", "busybox")
        assert len(out) == 64 and out.isalnum(), out  # the id, like docker run -d
        ids[name] = out
    return ids


def test_containers_on_one_application_network_talk(host: Host, app):
    assert container_pings(host, app["A"], "10.0.1.2")
    assert container_pings(host, app["B"], "10.0.1.1")


def test_application_networks_are_isolated(host: Host, app):
    assert not container_pings(host, app["A"], "10.0.2.1")
    assert not container_pings(host, app["D"], "10.0.1.1")


def nat_rules(host: Host) -> str:
    return host.run(["iptables", "-w", "5", "-t", "nat", "-S"]).stdout


def test_expose_gives_the_host_an_address_and_hide_takes_it_away(host: Host, app):
    assert not host_pings(host, "10.0.1.1")
    weave(host, "expose", "10.0.1.102/24")
    assert host_pings(host, "10.0.1.1")
    assert container_pings(host, app["A"], "10.0.1.102")
    assert "weave:expose" in weave(host, "ps")
    assert "weave-expose:10.0.1.102/24" in nat_rules(host)
    weave(host, "hide", "10.0.1.102/24")
    assert not host_pings(host, "10.0.1.1")
    assert "weave-expose" not in nat_rules(host)  # hide removes exactly its rules
    # A second hide is a no-op, as a second expose is: the end state is what was asked.
    assert weave_result(host, "hide", "10.0.1.102/24").returncode == 0


def test_a_container_on_two_networks_and_detach(host: Host, app):
    c = host.run(["docker", "run", "-d", "--network=none", "-t", "-i", "busybox"]).stdout.strip()
    weave(host, "attach", "10.0.2.2/24", c)
    weave(host, "attach", "10.0.1.3/24", c)
    assert container_pings(host, c, "10.0.2.1") and container_pings(host, c, "10.0.1.1")
    assert container_pings(host, app["A"], "10.0.1.3")
    assert container_pings(host, app["D"], "10.0.2.2")
    weave(host, "detach", "10.0.1.3/24", c)
    assert not container_pings(host, app["A"], "10.0.1.3")
    assert container_pings(host, app["D"], "10.0.2.2")
    ps = weave(host, "ps")
    line = next(x for x in ps.splitlines() if x.startswith(c[:12]))
    assert "10.0.2.2/24" in line and "10.0.1.3/24" not in line


def test_bad_input_is_refused_with_one_line_and_nothing_left_behind(host: Host, app):
    before = containers(host)
    one_line_error(weave_result(host, "run", "10.0.1.1/24", "-t", "-i", "busybox"), 1,
                   "10.0.1.1", "in use")
    one_line_error(weave_result(host, "run", "10.1.0.1/24", "busybox"), 1, "outside")
    one_line_error(weave_result(host, "run", "10.0.1.999/24", "busybox"), 2)
    one_line_error(weave_result(host, "run", "10.0.1.9", "busybox"), 2, "IP/CIDR")
    one_line_error(weave_result(host, "attach", "10.0.1.9/24", "nosuchcontainer"), 1,
                   "no such container")
    stopped = host.run(["docker", "create", "--network=none", "busybox"]).stdout.strip()
    one_line_error(weave_result(host, "attach", "10.0.1.9/24", stopped), 1, "not running")
    one_line_error(weave_result(host, "detach", "10.0.1.77/24", app["A"]), 1,
                   "not attached")
    one_line_error(weave_result(host, "launch", "10.0.0.1/16"), 1, "already running")
    one_line_error(weave_result(host, "expose", "10.0.1.1/24"), 1, "in use")
    host.run(["docker", "rm", stopped])
    assert containers(host) == before
    # Refusals changed nothing: the containers still talk.
    assert container_pings(host, app["A"], "10.0.1.2")


def test_reports_status_json_version_logs(host: Host, app):
    text = weave(host, "status")
    for needle in ("Range: 10.0.0.0/16", "Actors:", "netconf", "gossip", "10.0.1.1/24"):
        assert needle in text, text
    st = json.loads(weave(host, "status", "--json"))
    assert st["range"] == "10.0.0.0/16"
    assert {a["name"]: a["state"] for a in st["actors"]} == dict.fromkeys(
        ("netconf", "capture", "crypto", "forwarder", "gossip"), "running")
    assert all(isinstance(a["pid"], int) and a["restarts"] == 0 for a in st["actors"])
    ps = weave(host, "ps")
    for cid in app.values():
        assert cid[:12] in ps
    assert "weave router" in weave(host, "version")
    logs = weave(host, "logs").splitlines()
    events = [json.loads(x) for x in logs]
    assert {"actor", "pid", "inc", "event"} <= set(events[0])
    assert any(e["event"] == "container_attached" for e in events)


def test_stop_keeps_local_traffic_and_launch_brings_it_back(host: Host, app):
    pids = {c: host.container_pid(c) for c in app.values()}
    weave(host, "stop")
    one_line_error(weave_result(host, "status"), 1, "not running")
    assert container_pings(host, app["A"], "10.0.1.2")
    weave(host, "launch", "10.0.0.1/16")
    assert container_pings(host, app["B"], "10.0.1.1")
    assert {c: host.container_pid(c) for c in app.values()} == pids
    assert "10.0.1.1/24" in weave(host, "ps")


def test_reset_removes_every_trace(host: Host, app):
    weave(host, "expose", "10.0.1.102/24")
    assert "weave-expose" in nat_rules(host)
    weave(host, "reset")
    assert "weave-expose" not in nat_rules(host)
    links = host.run(["ip", "-o", "link"]).stdout
    assert "weave" not in links and "vethwe" not in links, links
    host.run(["test", "!", "-e", str(host.state_dir)])
    host.run(["test", "!", "-e", str(host.run_dir / "ctl.sock")])
    assert not container_pings(host, app["A"], "10.0.1.2")
    one_line_error(weave_result(host, "status"), 1, "not running")
