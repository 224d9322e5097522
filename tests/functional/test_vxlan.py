"""The fast datapath's kernel half (weavenet.host.vxlan) against the real kernel.

Two throwaway "hosts" (namespaces joined by a veth underlay, 198.18.x addresses inside them
only), each with the weave bridge, the router TAP and the VXLAN device made by the library,
and one "container" namespace each on the bridge. The library runs in this test's thread after
setns into the host (pyroute2.netns.pushns), exactly as netconf runs under nsenter. The root
namespace's links are compared before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support import netns_pings, wait_for
from weavenet.host import bridge, veth, vxlan

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.timeout(90),
]

MTU = 1450
UNDERLAY = {"a": "198.18.9.1", "b": "198.18.9.2"}
CONTAINER = {"a": "10.32.9.1/24", "b": "10.32.9.2/24"}


def _root_links() -> set[tuple[int, str]]:
    out = subprocess.run(["ip", "-j", "link", "show"], check=True, capture_output=True, text=True)
    return {(link["ifindex"], link["ifname"]) for link in json.loads(out.stdout)}


@contextmanager
def inside(path: str) -> Iterator[None]:
    from pyroute2 import netns

    root = os.stat("/proc/thread-self/ns/net").st_ino
    netns.pushns(path)
    try:
        assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat(path).st_ino != root
        yield
    finally:
        netns.popns()
        assert os.stat("/proc/thread-self/ns/net").st_ino == root


def sh(path: str, cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", "sh", "-c", cmd], capture_output=True,
                          text=True, timeout=20)


@pytest.fixture
def pair() -> Iterator[dict[str, str]]:
    """Host namespaces "a" and "b" on one underlay, containers "ca" and "cb"; all deleted after."""
    before = _root_links()
    tag = uuid.uuid4().hex[:6]
    names = {k: f"wnv{k}{tag}" for k in ("a", "b", "ca", "cb")}
    for n in names.values():
        subprocess.run(["ip", "netns", "add", n], check=True)
    paths = {k: f"/var/run/netns/{n}" for k, n in names.items()}
    try:
        sh(paths["a"], f"ip link add u0 type veth peer name u1 netns {names['b']}")
        sh(paths["a"], f"ip addr add {UNDERLAY['a']}/24 dev u0 && ip link set u0 up "
                       "&& ip link set lo up")
        sh(paths["b"], f"ip link set u1 name u0 && ip addr add {UNDERLAY['b']}/24 dev u0 "
                       "&& ip link set u0 up && ip link set lo up")
        for k in ("a", "b"):
            with inside(paths[k]):
                bridge.ensure_bridge(mtu=MTU)
                bridge.ensure_router_port(mtu=MTU)
                vxlan.ensure_vxlan(vxlan.fastdp_port(), MTU)
                veth.attach(paths["c" + k], CONTAINER[k], bridge="weave", mtu=MTU)
        yield paths
    finally:
        for n in names.values():
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
    assert _root_links() == before, "the root namespace's links changed"


def set_peers(path: str, ips: list[str]) -> dict[str, list[str]]:
    with inside(path):
        return vxlan.set_peers(ips)


def entries(path: str) -> dict[str, list[str]]:
    with inside(path):
        return vxlan.entries()


def bridge_macs_on_vxlan(path: str) -> set[str]:
    out = sh(path, f"bridge -j fdb show br weave brport {vxlan.VXLAN_NAME}")
    return {e["mac"] for e in json.loads(out.stdout or "[]")
            if "permanent" not in e.get("state", "") and e["mac"] != vxlan.ZERO_MAC}


def ip_of(cidr: str) -> str:
    return cidr.split("/")[0]


def test_device_is_on_the_bridge_with_isolated_ports_and_no_unicast_flood(
        pair: dict[str, str]) -> None:
    out = json.loads(sh(pair["a"], f"ip -j -d link show {vxlan.VXLAN_NAME}").stdout)[0]
    data = out["linkinfo"]["info_data"]
    assert data["id"] == vxlan.VNI and data["port"] == 6784 and data["learning"] is True
    assert out["master"] == "weave" and out["mtu"] == MTU
    with inside(pair["a"]):
        assert vxlan.port_flags(vxlan.VXLAN_NAME)["isolated"] == 1
        assert vxlan.port_flags(vxlan.VXLAN_NAME)["unicast_flood"] == 0
        assert vxlan.port_flags("weave-tap")["isolated"] == 1
        assert vxlan.present()


def test_flood_entries_carry_traffic_learn_macs_and_are_removed_with_them(
        pair: dict[str, str]) -> None:
    # no entries: nothing crosses (the sleeve is not running here)
    assert not netns_pings(pair["ca"], ip_of(CONTAINER["b"]), count=2)
    assert set_peers(pair["a"], [UNDERLAY["b"]]) == {"added": [UNDERLAY["b"]], "removed": []}
    assert set_peers(pair["b"], [UNDERLAY["a"]])["added"] == [UNDERLAY["a"]]
    assert set_peers(pair["a"], [UNDERLAY["b"]]) == {"added": [], "removed": []}  # idempotent
    assert wait_for(lambda: netns_pings(pair["ca"], ip_of(CONTAINER["b"])), 10, "vxlan ping")
    # the kernel learned b's container MAC towards b, and the bridge learned it on our port
    learned = {m for m, dsts in entries(pair["a"]).items()
               if m != vxlan.ZERO_MAC and dsts == [UNDERLAY["b"]]}
    assert learned and learned <= bridge_macs_on_vxlan(pair["a"])
    # dropping the peer removes its flood entry, what was learned towards it, and the
    # bridge's entries for those MACs: nothing keeps steering unicast into that path
    assert set_peers(pair["a"], [])["removed"] == [UNDERLAY["b"]]
    assert entries(pair["a"]) == {}
    assert not (learned & bridge_macs_on_vxlan(pair["a"]))
    # (b still sending to us by VXLAN would teach those entries again: the overlay state
    # machine keeps both ends' choices the same, as the peers do here)
    set_peers(pair["b"], [])
    assert not netns_pings(pair["ca"], ip_of(CONTAINER["b"]), count=2)


def test_moved_macs_point_at_the_peer_and_the_vxlan_port_only_for_fastdp_peers(
        pair: dict[str, str]) -> None:
    set_peers(pair["a"], [UNDERLAY["b"]])
    with inside(pair["a"]):
        moved = vxlan.move_macs([("02:00:00:00:00:0b", UNDERLAY["b"]),
                                 ("02:00:00:00:00:0c", "198.18.9.3")])  # not a fastdp peer
    assert moved == 1
    assert entries(pair["a"])["02:00:00:00:00:0b"] == [UNDERLAY["b"]]
    assert "02:00:00:00:00:0c" not in entries(pair["a"])
    assert "02:00:00:00:00:0b" in bridge_macs_on_vxlan(pair["a"])
    set_peers(pair["a"], [])  # leaving fastdp takes the moved entries away too
    assert not entries(pair["a"]) and "02:00:00:00:00:0b" not in bridge_macs_on_vxlan(pair["a"])


def test_reconcile_after_restart_keeps_entries_and_delete_removes_everything(
        pair: dict[str, str]) -> None:
    set_peers(pair["a"], [UNDERLAY["b"]])
    set_peers(pair["b"], [UNDERLAY["a"]])
    assert wait_for(lambda: netns_pings(pair["ca"], ip_of(CONTAINER["b"])), 10, "vxlan ping")
    index_before = json.loads(sh(pair["a"], f"ip -j link show {vxlan.VXLAN_NAME}").stdout)[0]
    before = entries(pair["a"])
    with inside(pair["a"]):  # what a restarted netconf does
        vxlan.ensure_vxlan(vxlan.fastdp_port(), MTU)
    after = json.loads(sh(pair["a"], f"ip -j link show {vxlan.VXLAN_NAME}").stdout)[0]
    assert after["ifindex"] == index_before["ifindex"]
    assert entries(pair["a"]) == before
    assert netns_pings(pair["ca"], ip_of(CONTAINER["b"]))
    # another port (a relaunch with --port) replaces the device
    with inside(pair["a"]):
        vxlan.ensure_vxlan(vxlan.fastdp_port(7000), MTU)
        assert vxlan.entries() == {}
        assert vxlan.delete() is True
        assert vxlan.delete() is False
        assert not vxlan.present()
    assert sh(pair["a"], f"ip link show {vxlan.VXLAN_NAME}").returncode != 0


def test_broadcast_from_vxlan_never_reaches_the_tap(pair: dict[str, str]) -> None:
    """The isolation that keeps the sleeve from sending again what the kernel delivered."""
    set_peers(pair["a"], [UNDERLAY["b"]])
    set_peers(pair["b"], [UNDERLAY["a"]])
    with inside(pair["b"]):
        from weavenet.host import tap

        fd = tap.open_tap("weave-tap", vnet_hdr=False)
    try:
        os.set_blocking(fd, False)
        # arping from a's container: a broadcast that crosses by VXLAN to b
        sh(pair["ca"], f"arping -c 2 -w 2 -I $(ls /sys/class/net | grep -v lo | head -1) "
                       f"{ip_of(CONTAINER['b'])} || ping -c 2 -W 1 {ip_of(CONTAINER['b'])}")
        assert wait_for(lambda: netns_pings(pair["ca"], ip_of(CONTAINER["b"])), 10, "ping")
        seen = []
        while True:
            try:
                seen.append(os.read(fd, 65536))
            except BlockingIOError:
                break
        a_macs = {m for m in entries(pair["b"]) if m != vxlan.ZERO_MAC}
        from_a = [f for f in seen if f[6:12].hex(":") in a_macs]
        assert from_a == []
    finally:
        os.close(fd)


def test_fastdp_heartbeat_crosses_the_device_and_a_too_big_one_cannot_leave(
        pair: dict[str, str]) -> None:
    """The heartbeat (weavenet.mesh.fdpwire) is decapsulated by b's real device and read from
    the packet socket; one larger than the underlay MTU with DF is refused at the sender; data
    frames crossing the same device never reach the listener."""
    import errno
    import select

    from weavenet.host import fdpsock
    from weavenet.mesh import fdpwire

    with inside(pair["b"]):
        rx = fdpsock.open_listener(vxlan.VXLAN_NAME)
    with inside(pair["a"]):
        tx = fdpsock.open_sender()
    try:
        # data through the same device first (needs flood entries): none of it may show up
        set_peers(pair["a"], [UNDERLAY["b"]])
        set_peers(pair["b"], [UNDERLAY["a"]])
        assert wait_for(lambda: netns_pings(pair["ca"], ip_of(CONTAINER["b"])), 10, "ping")
        hb = fdpwire.FdpHeartbeat("0a:00:00:00:00:01", 7, 1)
        datagram = fdpwire.encode_datagram(hb, vxlan.VNI, MTU)
        assert len(datagram) + 28 == MTU + fdpwire.OUTER_OVERHEAD == 1500
        tx.sendto(datagram, (UNDERLAY["b"], vxlan.fastdp_port()))
        assert select.select([rx], [], [], 5)[0], "heartbeat never arrived"
        frame = rx.recv(65536)
        assert fdpwire.decode_frame(frame) == hb
        assert len(frame) == MTU + fdpwire.ETH_HLEN
        assert not select.select([rx], [], [], 0.3)[0]  # the pings did not come here
        big = fdpwire.encode_datagram(hb, vxlan.VNI, MTU + 1)
        try:
            tx.sendto(big, (UNDERLAY["b"], vxlan.fastdp_port()))
            raise AssertionError("a DF datagram above the MTU was sent")
        except OSError as exc:
            assert exc.errno == errno.EMSGSIZE
    finally:
        rx.close()
        tx.close()
