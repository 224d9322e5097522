"""Host networking against the real kernel: bridge, router TAP, container veths, expose.

Every test gets a throwaway "host" namespace and runs the library *inside* it: the `host`
fixture moves the test's own thread there with setns (pyroute2.netns.pushns) and back
afterwards. setns changes only the calling thread, so this is exactly the situation of the
netconf actor under nsenter, the calls under test run in-process (exceptions, return values
and fds are the real ones, nothing is pickled), and the fixture verifies the move by inode
before any call so a failed setns cannot send a bridge into the root namespace. "Containers"
are more throwaway namespaces reached by their /var/run/netns path, like netns:PATH.
Traffic is real `ping` through `nsenter --net=...`. The root namespace's links are compared
before and after every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import netns_pings, wait_for
from weavenet.host import bridge, veth
from weavenet.host.netns import HostNetError, NamespaceGone

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.timeout(60),
]


# --- fixtures and probes -----------------------------------------------------------------


def _root_links() -> set[tuple[int, str]]:
    out = subprocess.run(["ip", "-j", "link", "show"], check=True, capture_output=True, text=True)
    return {(link["ifindex"], link["ifname"]) for link in json.loads(out.stdout)}


# Taken at import, during collection, before any test moves the thread.
ROOT_NETNS_INODE = os.stat("/proc/thread-self/ns/net").st_ino


def _ns_inode(path: str) -> int:
    return os.stat(path).st_ino


@pytest.fixture
def make_ns() -> Iterator[Callable[[str], str]]:
    """Create named namespaces on demand; delete them all at the end."""
    created: list[str] = []

    def make(role: str) -> str:
        name = f"wnh{role}{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        created.append(name)
        return f"/var/run/netns/{name}"

    yield make
    for name in reversed(created):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def host(make_ns: Callable[[str], str]) -> Iterator[str]:
    """Run the test inside a fresh host namespace; check the root namespace is untouched."""
    from pyroute2 import netns

    before = _root_links()
    root_inode = os.stat("/proc/thread-self/ns/net").st_ino
    assert root_inode == ROOT_NETNS_INODE
    path = make_ns("h")
    netns.pushns(path)
    try:
        assert os.stat("/proc/thread-self/ns/net").st_ino == _ns_inode(path) != root_inode
        yield path
    finally:
        netns.popns()
        assert os.stat("/proc/thread-self/ns/net").st_ino == root_inode
    assert _root_links() == before, "the root namespace's links changed"


@pytest.fixture
def container(make_ns: Callable[[str], str]) -> Callable[[], str]:
    return lambda: make_ns("c")


def ns_run(path: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *argv],
                          capture_output=True, text=True, timeout=timeout)


def can_ping(path: str, ip: str) -> bool:
    # A few seconds of tries: the very first echo can race the neighbour resolution on a
    # busy machine. Fails the test (naming both ends) if no echo ever comes back.
    return wait_for(lambda: netns_pings(path, ip), 5, f"{path} to ping {ip}")


def cannot_ping(path: str, ip: str) -> bool:
    return not netns_pings(path, ip, count=2)


def ip_json(path: str, *args: str) -> list[dict[str, Any]]:
    out = ns_run(path, "ip", "-j", "-d", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def snapshot(path: str) -> dict[str, Any]:
    """What an idempotent call must not change: links (admin state, mtu, master, kind, mac),
    addresses and routes. Carrier and operstate are left out: they settle asynchronously."""
    links = sorted(
        (link["ifname"], link["ifindex"], "UP" in link["flags"], link.get("mtu"),
         link.get("master"), link.get("linkinfo", {}).get("info_kind"), link.get("address"))
        for link in ip_json(path, "link", "show")
    )
    addrs = sorted(
        (a["ifname"], info["family"], info["local"], info["prefixlen"])
        for a in ip_json(path, "addr", "show") for info in a.get("addr_info", [])
    )
    routes = sorted(json.dumps(r, sort_keys=True) for r in ip_json(path, "route", "show"))
    return {"links": links, "addrs": addrs, "routes": routes}


def link_names(path: str) -> set[str]:
    return {link["ifname"] for link in ip_json(path, "link", "show")}


# --- the bridge ------------------------------------------------------------------------------


def test_bridge_is_up_without_stp_or_forward_delay_or_snooping(host: str) -> None:
    index = bridge.ensure_bridge(mtu=1410)
    (link,) = ip_json(host, "link", "show", "weave")
    data = link["linkinfo"]["info_data"]
    assert link["ifindex"] == index
    assert "UP" in link["flags"] and link["mtu"] == 1410
    assert (data["stp_state"], data["forward_delay"], data["mcast_snooping"]) == (0, 0, 0)
    assert data["ageing_time"] == 30000  # the default, in centiseconds


def test_bridge_mac_stays_put_when_a_port_with_a_lower_mac_joins(host: str) -> None:
    bridge.ensure_bridge()
    mac_before = ip_json(host, "link", "show", "weave")[0]["address"]
    for argv in (("add", "lowmac0", "address", "02:00:00:00:00:01",
                  "type", "veth", "peer", "name", "lowmac1"),
                 ("set", "lowmac0", "master", "weave", "up")):
        done = ns_run(host, "ip", "link", *argv)
        assert done.returncode == 0, done.stderr
    assert ip_json(host, "link", "show", "lowmac0")[0]["master"] == "weave"
    assert ip_json(host, "link", "show", "weave")[0]["address"] == mac_before


def test_existing_non_bridge_link_named_weave_is_refused(host: str) -> None:
    made = ns_run(host, "ip", "link", "add", "weave", "type", "veth", "peer", "name", "weavepeer")
    assert made.returncode == 0, made.stderr
    with pytest.raises(HostNetError, match="veth"):
        bridge.ensure_bridge()
    with pytest.raises(HostNetError, match="not a bridge"):
        bridge.ensure_router_port()


def test_router_port_is_a_persistent_tap_enslaved_to_the_bridge(host: str) -> None:
    bridge_index = bridge.ensure_bridge()
    index = bridge.ensure_router_port(mtu=1410)
    (tap,) = ip_json(host, "link", "show", "weave-tap")
    assert tap["ifindex"] == index and tap["master"] == "weave" and "UP" in tap["flags"]
    assert tap["mtu"] == 1410
    assert tap["linkinfo"]["info_kind"] == "tun"
    assert tap["linkinfo"]["info_data"]["type"] == "tap"
    assert tap["linkinfo"]["info_data"]["persist"] is True
    assert tap["linkinfo"]["info_data"]["multi_queue"] is True
    ports = bridge.bridge_ports()
    assert [(p["name"], p["kind"]) for p in ports] == [("weave-tap", "tun")]
    assert bridge_index != index


def test_an_older_single_queue_router_port_is_replaced_with_the_same_settings(host: str) -> None:
    bridge.ensure_bridge()
    made = ns_run(host, "sh", "-c", "ip tuntap add dev weave-tap mode tap && "
                  "ip link set weave-tap address 02:00:00:00:77:01 master weave mtu 1300 up")
    assert made.returncode == 0, made.stderr
    (old,) = ip_json(host, "link", "show", "weave-tap")
    assert old["linkinfo"]["info_data"].get("multi_queue") is not True
    index = bridge.ensure_router_port(mtu=1376)
    (tap,) = ip_json(host, "link", "show", "weave-tap")
    assert tap["ifindex"] == index != old["ifindex"]
    assert tap["linkinfo"]["info_data"]["multi_queue"] is True
    assert tap["linkinfo"]["info_data"]["persist"] is True
    assert tap["master"] == "weave" and "UP" in tap["flags"] and tap["mtu"] == 1376
    assert tap["address"] == "02:00:00:00:77:01"
    assert bridge.ensure_router_port(mtu=1376) == index  # a multi-queue one is kept


def test_a_kernel_that_does_not_report_multi_queue_is_asked_by_opening(host: str) -> None:
    bridge.ensure_bridge()
    made = ns_run(host, "ip", "tuntap", "add", "dev", "weave-tap", "mode", "tap")
    assert made.returncode == 0, made.stderr
    silent: dict[str, Any] = {}  # a link message without IFLA_TUN_MULTI_QUEUE
    assert bridge._multi_queue(silent, "weave-tap") is False
    bridge.ensure_router_port()
    assert bridge._multi_queue(silent, "weave-tap") is True


def test_router_port_needs_the_bridge(host: str) -> None:
    with pytest.raises(bridge.BridgeMissing):
        bridge.ensure_router_port()
    assert "weave-tap" not in link_names(host)


# --- containers ------------------------------------------------------------------------------


def test_containers_on_one_network_ping_each_other_over_the_bridge(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a, b = container(), container()
    att_a = veth.attach(a, "10.0.1.1/24")
    att_b = veth.attach(b, "10.0.1.2/24")
    assert att_a["ifname"] == "ethwe" and att_a["addresses"] == ["10.0.1.1/24"]
    assert att_a["host_ifname"] != att_b["host_ifname"]
    assert all(len(att["host_ifname"]) <= 15 for att in (att_a, att_b))
    (ethwe,) = ip_json(a, "link", "show", "ethwe")
    assert ethwe["address"] == att_a["mac"] == veth.container_mac(a)
    assert ethwe["mtu"] == 1410 and "UP" in ethwe["flags"]
    assert "UP" in ip_json(a, "link", "show", "lo")[0]["flags"]
    assert any(r["dst"] == "224.0.0.0/4" and r["dev"] == "ethwe"
               for r in ip_json(a, "route", "show"))
    ports = {p["name"]: p for p in bridge.bridge_ports()}
    assert ports[att_a["host_ifname"]]["kind"] == "veth"
    assert att_b["host_ifname"] in ports

    assert can_ping(a, "10.0.1.2")
    assert can_ping(b, "10.0.1.1")


def test_container_on_another_network_cannot_reach_the_first(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a, c = container(), container()
    veth.attach(a, "10.0.1.1/24")
    att_c = veth.attach(c, "10.0.2.1/24")
    # Same bridge, different application network: isolation is by subnet alone.
    assert att_c["host_ifname"] in {p["name"] for p in bridge.bridge_ports()}
    assert cannot_ping(c, "10.0.1.1")
    assert cannot_ping(a, "10.0.2.1")


def test_expose_lets_the_host_reach_a_container_and_hide_takes_it_away(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a = container()
    veth.attach(a, "10.0.1.1/24")
    assert cannot_ping(host, "10.0.1.1")

    assert bridge.expose("10.0.1.254/24") is True
    assert bridge.expose("10.0.1.254/24") is False
    assert bridge.bridge_addresses() == ["10.0.1.254/24"]
    assert can_ping(host, "10.0.1.1")
    assert can_ping(a, "10.0.1.254")

    assert bridge.hide("10.0.1.254/24") is True
    assert bridge.hide("10.0.1.254/24") is False
    assert bridge.bridge_addresses() == []
    assert cannot_ping(host, "10.0.1.1")


def test_expose_without_bridge_is_an_error_and_hide_is_a_no_op(host: str) -> None:
    with pytest.raises(bridge.BridgeMissing):
        bridge.expose("10.0.1.254/24")
    assert bridge.hide("10.0.1.254/24") is False
    assert bridge.bridge_addresses() == [] and bridge.bridge_ports() == []


def test_second_network_adds_an_address_and_detach_removes_one_at_a_time(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a, b, c = container(), container(), container()
    first = veth.attach(a, "10.0.1.1/24")
    second = veth.attach(a, "10.0.2.1/24")
    assert second["host_ifname"] == first["host_ifname"] and second["mac"] == first["mac"]
    assert veth.container_addresses(a) == ["10.0.1.1/24", "10.0.2.1/24"]
    veth.attach(b, "10.0.1.2/24")
    veth.attach(c, "10.0.2.2/24")
    assert can_ping(b, "10.0.1.1") and can_ping(c, "10.0.2.1")

    assert veth.detach(a, "10.0.1.1/24") is True
    assert veth.container_addresses(a) == ["10.0.2.1/24"]
    assert cannot_ping(b, "10.0.1.1")
    assert can_ping(c, "10.0.2.1")
    assert veth.detach(a, "10.0.1.1/24") is False

    assert veth.detach(a, "10.0.2.1/24") is True
    assert "ethwe" not in link_names(a)
    wait_for(lambda: first["host_ifname"] not in link_names(host), 10, "the host veth to go")
    assert veth.container_addresses(a) == [] and veth.container_mac(a) is None
    assert veth.detach(a, "10.0.2.1/24") is False


def test_one_namespace_reached_by_two_paths_is_one_attachment(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a = container()
    sleeper = subprocess.Popen(["nsenter", f"--net={a}", "sleep", "60"])
    try:
        by_pid = f"/proc/{sleeper.pid}/ns/net"
        wait_for(lambda: os.path.exists(by_pid) and os.stat(by_pid).st_ino == _ns_inode(a), 10,
                 "sleep to enter the container namespace")
        first = veth.attach(a, "10.0.1.1/24")
        second = veth.attach(by_pid, "10.0.2.1/24")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert first["host_ifname"] == second["host_ifname"]
    assert second["addresses"] == ["10.0.1.1/24", "10.0.2.1/24"]
    assert [p["kind"] for p in bridge.bridge_ports()] == ["veth"]


def test_replayed_attach_puts_a_veth_back_on_a_recreated_bridge(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a, b = container(), container()
    att = veth.attach(a, "10.0.1.1/24")
    veth.attach(b, "10.0.1.2/24")
    gone = ns_run(host, "ip", "link", "del", "weave")  # someone deletes the bridge by hand
    assert gone.returncode == 0, gone.stderr
    assert cannot_ping(b, "10.0.1.1")

    bridge.ensure_bridge()
    assert veth.attach(a, "10.0.1.1/24") == att  # what a restarted netconf replays
    veth.attach(b, "10.0.1.2/24")
    assert can_ping(b, "10.0.1.1")


def test_every_call_is_idempotent(host: str, container: Callable[[], str]) -> None:
    a = container()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("ensure_bridge", bridge.ensure_bridge),
        ("ensure_router_port", bridge.ensure_router_port),
        ("attach", lambda: veth.attach(a, "10.0.1.1/24")),
        ("attach second", lambda: veth.attach(a, "10.0.2.1/24")),
        ("expose", lambda: bridge.expose("10.0.1.254/24")),
        ("hide", lambda: bridge.hide("10.0.1.254/24")),
        ("detach one", lambda: veth.detach(a, "10.0.1.1/24")),
        ("detach last", lambda: veth.detach(a, "10.0.2.1/24")),
        ("teardown", bridge.teardown),
    ]
    for name, step in steps:
        step()
        once = (snapshot(host), snapshot(a))
        second = step()
        assert (snapshot(host), snapshot(a)) == once, f"{name} changed something the second time"
        if isinstance(second, bool):
            assert second is False, f"{name} claimed a change the second time"


def test_attach_without_bridge_fails_cleanly(host: str, container: Callable[[], str]) -> None:
    a = container()
    before = snapshot(host), snapshot(a)
    with pytest.raises(bridge.BridgeMissing):
        veth.attach(a, "10.0.1.1/24")
    assert (snapshot(host), snapshot(a)) == before


@pytest.mark.parametrize("cidr", ["10.0.1.1", "nonsense/24", "10.0.1.1/33", ""])
def test_attach_rejects_a_malformed_cidr(
    host: str, container: Callable[[], str], cidr: str
) -> None:
    bridge.ensure_bridge()
    a = container()
    with pytest.raises(HostNetError):
        veth.attach(a, cidr)
    assert "ethwe" not in link_names(a)
    assert bridge.bridge_ports() == []


def test_failed_attach_removes_the_veth_it_created_but_not_an_existing_one(
    host: str, container: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge.ensure_bridge()
    a, b = container(), container()
    veth.attach(b, "10.0.1.2/24")
    host_before = snapshot(host)

    def refuse(*_args: object) -> bool:
        raise HostNetError("address refused (injected)")

    monkeypatch.setattr(veth, "add_address", refuse)
    with pytest.raises(HostNetError, match="injected"):
        veth.attach(a, "10.0.1.1/24")
    assert "ethwe" not in link_names(a)
    assert snapshot(host) == host_before

    with pytest.raises(HostNetError, match="injected"):
        veth.attach(b, "10.0.2.2/24")  # b's veth predates this call: it stays
    monkeypatch.undo()
    assert veth.container_addresses(b) == ["10.0.1.2/24"]
    assert snapshot(host) == host_before


def test_exited_container_gives_namespace_gone(host: str, make_ns: Callable[[str], str]) -> None:
    bridge.ensure_bridge()
    proc = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{proc.pid}/ns/net"
        wait_for(lambda: os.path.exists(path)
                 and os.stat(path).st_ino != _ns_inode(host)
                 and os.stat(path).st_ino != ROOT_NETNS_INODE,
                 10, "sleep to enter its own namespace")
        att = veth.attach(path, "10.0.1.1/24")
        assert att["host_ifname"] == veth.host_veth_name(os.stat(path).st_ino)
    finally:
        proc.kill()
        proc.wait()
    for call in (lambda: veth.attach(path, "10.0.1.1/24"), lambda: veth.detach(path, "10.0.1.1/24"),
                 lambda: veth.container_addresses(path), lambda: veth.container_mac(path)):
        with pytest.raises(NamespaceGone):
            call()
    # The kernel removes the host side when the namespace dies.
    wait_for(lambda: att["host_ifname"] not in link_names(host), 10, "the orphan veth's removal")

    gone = make_ns("x")
    subprocess.run(["ip", "netns", "del", os.path.basename(gone)], check=True)
    with pytest.raises(NamespaceGone):
        veth.attach(gone, "10.0.1.1/24")


def test_a_path_that_is_not_a_container_namespace_is_refused(host: str) -> None:
    for path in ("/etc/hostname", "/proc/self/ns/mnt", host):
        with pytest.raises(HostNetError):
            veth.attach(path, "10.0.1.1/24")


# --- teardown --------------------------------------------------------------------------------


def test_teardown_leaves_no_bridge_veth_or_tap(host: str, container: Callable[[], str]) -> None:
    bridge.ensure_bridge()
    bridge.ensure_router_port()
    a, b = container(), container()
    names = {veth.attach(a, "10.0.1.1/24")["host_ifname"],
             veth.attach(b, "10.0.2.1/24")["host_ifname"]}
    bridge.expose("10.0.1.254/24")

    removed = bridge.teardown()
    assert set(removed) == {"weave", "weave-tap", *names}
    assert link_names(host) == {"lo"}
    assert "ethwe" not in link_names(a) and "ethwe" not in link_names(b)
    assert bridge.teardown() == []
    assert bridge.bridge_ports() == [] and bridge.bridge_addresses() == []


def test_teardown_when_nothing_exists_is_fine(host: str) -> None:
    assert bridge.teardown() == []
    assert link_names(host) == {"lo"}


def test_teardown_removes_veths_orphaned_by_a_deleted_bridge(
    host: str, container: Callable[[], str]
) -> None:
    bridge.ensure_bridge()
    a = container()
    name = veth.attach(a, "10.0.1.1/24")["host_ifname"]
    assert ns_run(host, "ip", "link", "del", "weave").returncode == 0
    assert bridge.teardown() == [name]
    assert link_names(host) == {"lo"} and "ethwe" not in link_names(a)
