"""The router port from userspace: virtio-net headers, offloads, reading and injecting frames.

Root tests build a throwaway host namespace with the weave bridge, its router TAP and a
"container" namespace, and run inside the host namespace the way the capture actor does
(see test_bridge.py for why the test thread is moved with setns). Frames seen inside the
container are read with an AF_PACKET socket created in its namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.support import wait_for
from weavenet.dataplane.frame import (
    VNET_F_NEEDS_CSUM,
    VNET_GSO_ECN,
    VNET_GSO_NONE,
    VNET_GSO_TCPV4,
    VNET_HDR_LEN,
    FrameError,
    VnetHdr,
    build_vnet_hdr,
    gso_type,
    parse_vnet_hdr,
)
from weavenet.host import bridge, tap, veth
from weavenet.host.netns import socket_in_netns

needs_root = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not os.path.exists(tap.TUN_DEVICE), reason="no /dev/net/tun"),
    pytest.mark.timeout(60),
]

ROOT_NETNS_INODE = os.stat("/proc/thread-self/ns/net").st_ino
ETH_P_ALL = 0x0003
ETHERTYPE_TEST = 0x88B5  # IEEE 802 local experimental EtherType
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV4 = 0x0800


# --- the header, no kernel needed ----------------------------------------------------------


def test_vnet_header_round_trips_every_field() -> None:
    hdr = VnetHdr(flags=VNET_F_NEEDS_CSUM, gso_type=VNET_GSO_TCPV4 | VNET_GSO_ECN,
                  hdr_len=66, gso_size=1398, csum_start=34, csum_offset=16)
    raw = build_vnet_hdr(hdr)
    assert len(raw) == VNET_HDR_LEN == 10
    assert raw == bytes([1, 0x81, 66, 0, 0x76, 0x05, 34, 0, 16, 0])  # little-endian u16s
    assert parse_vnet_hdr(raw + b"frame") == hdr
    assert gso_type(raw) == VNET_GSO_TCPV4


def test_plain_header_is_all_zeros_and_means_a_finished_frame() -> None:
    assert build_vnet_hdr() == bytes(10)
    assert parse_vnet_hdr(build_vnet_hdr()) == VnetHdr()


@pytest.mark.parametrize("size", [0, 1, 9])
def test_vnet_header_rejects_a_short_buffer(size: int) -> None:
    with pytest.raises(FrameError):
        parse_vnet_hdr(bytes(size))


def test_vnet_header_refuses_to_build_out_of_range_fields() -> None:
    with pytest.raises(FrameError):
        build_vnet_hdr(VnetHdr(gso_size=70000))
    with pytest.raises(FrameError):
        build_vnet_hdr(VnetHdr(flags=-1))


# --- fixtures for the kernel tests -------------------------------------------------------


@dataclass
class Site:
    host: str  # host namespace path (the test thread runs inside it)
    container: str  # a container namespace path, attached as 10.0.1.1/24
    mac: str  # the container's ethwe MAC


@pytest.fixture
def site() -> Iterator[Site]:
    from pyroute2 import netns

    root_links = subprocess.run(["ip", "-j", "link", "show"], capture_output=True).stdout
    names = [f"wnt{role}{uuid.uuid4().hex[:6]}" for role in "hc"]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    host, cont = (f"/var/run/netns/{n}" for n in names)
    netns.pushns(host)
    try:
        assert os.stat("/proc/thread-self/ns/net").st_ino == os.stat(host).st_ino
        bridge.ensure_bridge()
        bridge.ensure_router_port()
        att = veth.attach(cont, "10.0.1.1/24")
        yield Site(host=host, container=cont, mac=att["mac"])
    finally:
        netns.popns()
        assert os.stat("/proc/thread-self/ns/net").st_ino == ROOT_NETNS_INODE
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    after = subprocess.run(["ip", "-j", "link", "show"], capture_output=True).stdout
    assert _link_ids(after) == _link_ids(root_links), "the root namespace's links changed"


def _link_ids(ip_json: bytes) -> set[tuple[int, str]]:
    return {(link["ifindex"], link["ifname"]) for link in json.loads(ip_json)}


def wait_port_forwarding(site: Site, timeout: float = 5.0) -> None:
    """Opening the TAP turns its carrier on; the bridge learns that through linkwatch, which
    may batch the event for up to a second. Frames sent before the port forwards are lost."""

    def state() -> str | None:
        out = ns_run(site.host, "bridge", "-j", "link", "show", "dev", bridge.ROUTER_PORT)
        ports = json.loads(out.stdout or "[]")
        return ports[0].get("state") if ports else None

    wait_for(lambda: state() == "forwarding", timeout, "the router port to forward",
             interval=0.05)


@pytest.fixture
def tap_fd(site: Site) -> Iterator[int]:
    fd = tap.open_tap(bridge.ROUTER_PORT)
    try:
        wait_port_forwarding(site)
        yield fd
    finally:
        os.close(fd)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


@pytest.fixture
def container_raw(site: Site) -> Iterator[socket.socket]:
    """An AF_PACKET socket on the container's ethwe for the test EtherType."""
    ns_fd = os.open(site.container, os.O_RDONLY)
    try:
        sock = socket_in_netns(ns_fd, socket.AF_PACKET, socket.SOCK_RAW,
                               socket.htons(ETHERTYPE_TEST))
    finally:
        os.close(ns_fd)
    sock.bind(("ethwe", ETHERTYPE_TEST))
    yield sock
    sock.close()


def ns_run(path: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", f"--net={path}", *argv],
                          capture_output=True, text=True, timeout=20)


def read_until(
    fd: int, match: Callable[[bytes], bool], timeout: float = 5.0
) -> tuple[bytes, list[bytes]]:
    """Read items until one matches; return it and everything read before it."""
    seen: list[bytes] = []

    def matching() -> bytes | None:
        select.select([fd], [], [], 0.1)
        for item in tap.read_batch(fd):
            if match(item):
                return item
            seen.append(item)
        return None

    item = wait_for(matching, timeout, "a matching frame from the TAP", interval=0)
    return item, seen


def ethertype_of(frame: bytes | memoryview) -> int:
    return struct.unpack_from("!H", frame, 12)[0]


def craft_frame(src: bytes, nonce: bytes, dst: bytes = b"\xff" * 6) -> bytes:
    return dst + src + struct.pack("!H", ETHERTYPE_TEST) + nonce.ljust(46, b"\0")


# --- the kernel tests -------------------------------------------------------------------


class TestRouterPort:
    pytestmark = needs_root

    def test_persistent_tap_opens_with_vnet_header_and_offloads(self, site: Site) -> None:
        handle = tap.open_tap_handle(bridge.ROUTER_PORT)
        try:
            wanted = tap.TUN_F_CSUM | tap.TUN_F_TSO4 | tap.TUN_F_TSO6
            assert handle.vnet_hdr and handle.offloads & wanted == wanted
            info = self._tun_info(site)
            assert info["vnet_hdr"] is True and info["persist"] is True
            os.close(tap.open_tap(bridge.ROUTER_PORT))  # multi-queue: a second open is a queue
        finally:
            os.close(handle.fd)
        # Persistent: the port survives its reader closing and stays on the bridge.
        ports = {p["name"]: p for p in bridge.bridge_ports()}
        assert ports[bridge.ROUTER_PORT]["kind"] == "tun"
        os.close(tap.open_tap(bridge.ROUTER_PORT))

    @staticmethod
    def _tun_info(site: Site) -> dict:
        out = ns_run(site.host, "ip", "-j", "-d", "link", "show", bridge.ROUTER_PORT)
        return json.loads(out.stdout)[0]["linkinfo"]["info_data"]

    def test_reads_the_arp_broadcast_a_container_sends(self, site: Site, tap_fd: int) -> None:
        pinger = subprocess.Popen(
            ["nsenter", f"--net={site.container}", "ping", "-c", "3", "-i", "0.3", "10.0.1.99"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            src = mac_bytes(site.mac)

            def is_arp_from_container(item: bytes) -> bool:
                frame = item[VNET_HDR_LEN:]
                return frame[6:12] == src and ethertype_of(frame) == ETHERTYPE_ARP

            item, _ = read_until(tap_fd, is_arp_from_container)
        finally:
            pinger.kill()
            pinger.wait()
        hdr, frame = parse_vnet_hdr(item), item[VNET_HDR_LEN:]
        assert hdr == VnetHdr()  # a small complete frame: nothing for us to finish
        assert bytes(frame[:6]) == b"\xff" * 6
        assert bytes(frame[38:42]) == bytes([10, 0, 1, 99])  # ARP target protocol address

    def test_tcp_syn_arrives_with_its_partial_checksum_described(
        self, site: Site, tap_fd: int
    ) -> None:
        # A static neighbour sends the SYN straight out, to a MAC only the TAP side can have.
        far_mac = "02:00:00:00:00:99"
        done = ns_run(site.container, "ip", "neigh", "replace", "10.0.1.99", "lladdr", far_mac,
                      "dev", "ethwe", "nud", "permanent")
        assert done.returncode == 0, done.stderr
        client = subprocess.Popen(
            ["nsenter", f"--net={site.container}", "python3", "-c",
             "import socket; socket.create_connection(('10.0.1.99', 6783), timeout=2)"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def is_syn(item: bytes) -> bool:
                frame = item[VNET_HDR_LEN:]
                return (frame[:6] == mac_bytes(far_mac) and ethertype_of(frame) == ETHERTYPE_IPV4
                        and frame[14 + 9] == socket.IPPROTO_TCP)

            item, _ = read_until(tap_fd, is_syn)
        finally:
            client.kill()
            client.wait()
        hdr, frame = parse_vnet_hdr(item), item[VNET_HDR_LEN:]
        # The container's kernel left the TCP checksum to "hardware": the header says where.
        assert hdr.flags & VNET_F_NEEDS_CSUM and gso_type(item) == VNET_GSO_NONE
        assert (hdr.csum_start, hdr.csum_offset) == (14 + 20, 16)
        assert len(frame) >= hdr.csum_start + hdr.csum_offset + 2

    def test_frame_written_with_a_plain_header_reaches_the_container(
        self, site: Site, tap_fd: int, container_raw: socket.socket
    ) -> None:
        remote_mac = bytes.fromhex("02aabbccdd01")
        nonce = uuid.uuid4().bytes
        assert tap.write_frame(tap_fd, build_vnet_hdr() + craft_frame(remote_mac, nonce))

        def injected() -> bytes | None:
            ready, _, _ = select.select([container_raw], [], [], 0.2)
            data = container_raw.recv(2048) if ready else b""
            return data if nonce in data else None

        data = wait_for(injected, 5, "the injected frame in the container", interval=0)
        assert data[6:12] == remote_mac
        # The bridge learned the remote MAC on the router port, so replies go back to us.
        fdb = json.loads(ns_run(site.host, "bridge", "-j", "fdb", "show", "br", "weave").stdout)
        assert any(e["mac"] == "02:aa:bb:cc:dd:01" and e["ifname"] == bridge.ROUTER_PORT
                   for e in fdb)

    def test_write_frame_returns_false_when_the_kernel_refuses(self, site: Site,
                                                               tap_fd: int) -> None:
        frame = craft_frame(bytes.fromhex("02aabbccdd02"), b"refused")
        bad = build_vnet_hdr(VnetHdr(flags=VNET_F_NEEDS_CSUM, csum_start=4000, csum_offset=16))
        assert tap.write_frame(tap_fd, bad + frame) is False  # EINVAL: malformed header
        assert tap.write_frame(tap_fd, b"\0" * 4) is False  # shorter than the header
        ns_run(site.host, "ip", "link", "set", bridge.ROUTER_PORT, "down")
        assert tap.write_frame(tap_fd, build_vnet_hdr() + frame) is False  # EIO: port down
        with pytest.raises(OSError):
            tap.write_frame(-1, build_vnet_hdr() + frame)  # a bug, not a drop

    def test_read_batch_stops_at_max_frames_or_bytes_and_never_blocks(
        self, site: Site, tap_fd: int, container_raw: socket.socket
    ) -> None:
        src = mac_bytes(site.mac)
        nonces = [uuid.uuid4().bytes for _ in range(5)]
        # A packet socket on the router port sees each frame as the bridge hands it to the TAP
        # driver, just before it joins the TAP's queue (outgoing frames reach only ETH_P_ALL
        # sockets). Once it has seen all five, more than two wait to be read.
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        with sniffer:
            sniffer.bind((bridge.ROUTER_PORT, ETH_P_ALL))
            sniffer.settimeout(0.2)
            for nonce in nonces:
                container_raw.send(craft_frame(src, nonce))
            pending = set(nonces)

            def handed_to_the_tap() -> bool:
                with contextlib.suppress(TimeoutError):
                    data = sniffer.recv(2048)
                    pending.difference_update([n for n in pending if n in data])
                return not pending

            wait_for(handed_to_the_tap, 5, "the five frames to reach the TAP", interval=0)
        first = tap.read_batch(tap_fd, max_frames=2)
        assert len(first) == 2
        second = tap.read_batch(tap_fd, max_bytes=1)  # the first item is past any byte limit
        assert len(second) == 1
        got = first + second

        def all_read() -> bool:
            select.select([tap_fd], [], [], 0.1)
            got.extend(tap.read_batch(tap_fd))
            return all(any(n in item for item in got) for n in nonces)

        wait_for(all_read, 5, "all five test frames out of the TAP", interval=0)
        started = time.monotonic()
        tap.read_batch(tap_fd)  # whatever is left (maybe nothing): returns at once
        assert time.monotonic() - started < 0.5

    def test_without_vnet_header_items_are_bare_ethernet(
        self, site: Site, container_raw: socket.socket
    ) -> None:
        fd = tap.open_tap(bridge.ROUTER_PORT, vnet_hdr=False)
        try:
            wait_port_forwarding(site)
            nonce = uuid.uuid4().bytes
            container_raw.send(craft_frame(mac_bytes(site.mac), nonce))
            item, _ = read_until(fd, lambda it: nonce in it)
            assert item[6:12] == mac_bytes(site.mac) and ethertype_of(item) == ETHERTYPE_TEST
        finally:
            os.close(fd)


# --- the two queues: capture reads, the forwarder writes -------------------------------------


def ipv4_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(dst_mac: bytes, src_mac: bytes, src: str, dst: str, ident: int) -> bytes:
    """An Ethernet frame carrying an ICMP echo request from `src` to `dst`."""
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + uuid.uuid4().bytes
    icmp = icmp[:2] + struct.pack("!H", ipv4_checksum(icmp)) + icmp[4:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), ident, 0, 64, 1, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", ipv4_checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETHERTYPE_IPV4) + ip + icmp


def is_echo_reply_to(item: bytes, ip: str) -> bool:
    frame = item[VNET_HDR_LEN:]
    return (ethertype_of(frame) == ETHERTYPE_IPV4 and frame[14 + 9] == socket.IPPROTO_ICMP
            and frame[14 + 16:14 + 20] == socket.inet_aton(ip) and frame[34] == 0)


def receives(sock: socket.socket, nonce: bytes, timeout: float = 5.0) -> bool:
    def seen() -> bool:
        ready, _, _ = select.select([sock], [], [], 0.2)
        return bool(ready) and nonce in sock.recv(2048)

    return bool(wait_for(seen, timeout, "the frame in the container", interval=0))


@contextlib.contextmanager
def capture_process(site: Site) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the TAP's attached queue, as the capture actor does."""
    code = ("import sys, time; from weavenet.host import tap; "
            f"tap.open_existing({bridge.ROUTER_PORT!r}); print('open', flush=True); "
            "time.sleep(120)")
    proc = subprocess.Popen(["nsenter", f"--net={site.host}", sys.executable, "-c", code],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        yield proc
    finally:
        proc.kill()
        proc.wait()


class TestQueues:
    pytestmark = needs_root

    def test_the_router_port_is_multi_queue_and_opens_once_per_actor(self, site: Site) -> None:
        reader = tap.open_existing(bridge.ROUTER_PORT)
        writer = tap.open_existing(bridge.ROUTER_PORT, detached=True)
        try:
            info = TestRouterPort._tun_info(site)
            assert info["multi_queue"] is True and info["persist"] is True
            assert writer.detached and writer.offloads == reader.offloads
        finally:
            os.close(reader.fd)
            os.close(writer.fd)
        with pytest.raises(tap.TapError):
            tap.open_existing("weave-nosuch")

    def test_the_detached_queue_injects_while_capture_is_killed(
        self, site: Site, container_raw: socket.socket
    ) -> None:
        remote_mac = bytes.fromhex("02aabbccdd03")
        with capture_process(site) as capture:
            writer = tap.open_existing(bridge.ROUTER_PORT, detached=True)
            try:
                wait_port_forwarding(site)
                nonce = uuid.uuid4().bytes
                assert tap.write_frame(writer.fd, build_vnet_hdr() + craft_frame(remote_mac, nonce))
                assert receives(container_raw, nonce)
                os.kill(capture.pid, signal.SIGKILL)
                capture.wait()
                # No attached queue left: the port must still forward what the writer injects.
                for _ in range(3):
                    nonce = uuid.uuid4().bytes
                    assert tap.write_frame(writer.fd,
                                           build_vnet_hdr() + craft_frame(remote_mac, nonce))
                    assert receives(container_raw, nonce)
                    time.sleep(0.5)  # past linkwatch's batching of a carrier change
            finally:
                os.close(writer.fd)

    def test_a_writer_alone_injects(self, site: Site, container_raw: socket.socket) -> None:
        """A forwarder (re)started while capture is down: its queue is the only one."""
        writer = tap.open_existing(bridge.ROUTER_PORT, detached=True)
        try:
            time.sleep(1.2)  # past linkwatch's batching of a carrier change
            nonce = uuid.uuid4().bytes
            assert tap.write_frame(writer.fd, build_vnet_hdr()
                                   + craft_frame(bytes.fromhex("02aabbccdd04"), nonce))
            assert receives(container_raw, nonce)
        finally:
            os.close(writer.fd)

    def test_bridge_frames_reach_only_the_attached_queue(self, site: Site) -> None:
        """Replies to frames the writer injected, broadcasts, many flows: all go to capture's
        queue (the kernel steers a flow to the queue that wrote into it, unless detached)."""
        reader = tap.open_existing(bridge.ROUTER_PORT)
        writer = tap.open_existing(bridge.ROUTER_PORT, detached=True)
        try:
            wait_port_forwarding(site)
            cmac = mac_bytes(site.mac)
            remotes = [(f"10.0.1.{100 + i}", bytes.fromhex(f"02aabbcc{i:02x}10"))
                       for i in range(16)]
            for ip, mac in remotes:
                done = ns_run(site.container, "ip", "neigh", "replace", ip, "lladdr",
                              mac.hex(":"), "dev", "ethwe", "nud", "permanent")
                assert done.returncode == 0, done.stderr
            pending = {ip for ip, _ in remotes}
            got: list[bytes] = []

            def all_replied() -> bool:
                for n, (ip, mac) in enumerate(remotes):
                    if ip in pending:
                        assert tap.write_frame(writer.fd, build_vnet_hdr()
                                               + echo_request(cmac, mac, ip, "10.0.1.1", n + 1))
                select.select([reader.fd], [], [], 0.2)
                for item in tap.read_batch(reader.fd, 256):
                    got.append(item)
                    pending.difference_update(ip for ip in list(pending)
                                              if is_echo_reply_to(item, ip))
                assert tap.read_batch(writer.fd) == []
                return not pending

            wait_for(all_replied, 10, "echo replies to every injected request", interval=0)
            # More flows, sent by the container itself: broadcasts and unicast to each remote.
            pinger = ns_run(site.container, "sh", "-c", " & ".join(
                f"ping -c 2 -i 0.2 -W 1 {ip} >/dev/null" for ip, _ in remotes) + "; wait")
            assert pinger.returncode in (0, 1)
            time.sleep(0.2)
            got.extend(tap.read_batch(reader.fd, 1024))
            requests = [it for it in got if it[VNET_HDR_LEN + 12:VNET_HDR_LEN + 14] == b"\x08\x00"
                        and it[VNET_HDR_LEN + 23] == socket.IPPROTO_ICMP
                        and it[VNET_HDR_LEN + 34] == 8]
            assert len(requests) >= len(remotes)
            assert tap.read_batch(writer.fd) == []
        finally:
            os.close(reader.fd)
            os.close(writer.fd)
