"""Encryption across lab hosts with real dockerd: `weave launch -password` protects every byte.

host1 and host2 share the password; host3 is launched with another password, then with none.
Containers: 10.0.1.1 on host1, 10.0.1.2 on host2, 10.0.1.3 on host3. Captures are taken with
tcpdump on host1's underlay interface (eth0) and read as pcap bytes here.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import (
    actor,
    actor_status,
    container_pings,
    eventually_pings,
    holds_for,
    log_events,
    wait_for,
    wait_listening,
    weave,
)
from weavenet.dataplane import sleeve
from weavenet.lab import Host, Lab

pytestmark = [pytest.mark.root, pytest.mark.docker]

PASSWORD = "wEaVe"
OTHER_PASSWORD = "sOmEtHiNgElSe"
SECRET = "zyxxy-plaintext-canary-4711"  # what containers say to each other
CONTAINER_IPS = (socket.inet_aton("10.0.1.1"), socket.inet_aton("10.0.1.2"))
PORT = 6783


# -- pcap -------------------------------------------------------------------------------------


def pcap_payloads(path: Path) -> list[tuple[str, str, int, int, bytes]]:
    """(proto, src ip, src port, dst port, payload) of every IPv4 TCP/UDP packet in a pcap."""
    data = path.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    pos, out = 24, []
    while pos + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        pkt = data[pos + 16:pos + 16 + caplen]
        pos += 16 + caplen
        if linktype == 1:  # Ethernet
            if pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
        elif linktype == 113:  # Linux cooked
            if pkt[14:16] != b"\x08\x00":
                continue
            ip = pkt[16:]
        else:
            ip = pkt
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0xF) * 4
        proto = ip[9]
        src = socket.inet_ntoa(ip[12:16])
        l4 = ip[ihl:]
        if proto == 17 and len(l4) >= 8:
            sport, dport = struct.unpack("!HH", l4[:4])
            out.append(("udp", src, sport, dport, l4[8:]))
        elif proto == 6 and len(l4) >= 20:
            sport, dport = struct.unpack("!HH", l4[:4])
            off = (l4[12] >> 4) * 4
            out.append(("tcp", src, sport, dport, l4[off:]))
    return out


@contextmanager
def capture(host: Host, path: Path) -> Iterator[Path]:
    """tcpdump on the host's underlay interface for the duration of the block."""
    # --immediate-mode: without it libpcap hands packets over in blocks up to a second late,
    # and whatever is still in the ring when tcpdump is stopped is lost.
    proc = host.popen(["tcpdump", "-i", "eth0", "-n", "-s", "0", "-U", "--immediate-mode",
                       "-w", str(path), "tcp port 6783 or udp port 6783 or udp port 6784"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # tcpdump says "listening on eth0" once its socket is attached and filtered.
        assert proc.stderr is not None
        said = [proc.stderr.readline()]
        while said[-1] and "listening on eth0" not in said[-1]:
            said.append(proc.stderr.readline())
        assert said[-1], f"tcpdump did not start: {''.join(said)!r}"
        yield path
    finally:
        # A grace period, not a synchronisation: datagrams sent just before the block ended
        # may still be on their way to tcpdump, and nothing says when it has written them.
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except Exception:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def assert_no_plaintext(path: Path) -> list[tuple[str, str, int, int, bytes]]:
    raw = path.read_bytes()
    assert SECRET.encode() not in raw, "the containers' string crossed the underlay in clear"
    packets = [p for p in pcap_payloads(path) if PORT in (p[2], p[3])]
    for proto, src, _, _, payload in packets:
        for ip in CONTAINER_IPS:
            assert ip not in payload, f"a container address in clear in {proto} from {src}"
    return packets


def sealed_datagrams(packets, src: str) -> list[bytes]:
    # sleeve header: version, kind 1 (frames), flags 1 (encrypted)
    return [p[4] for p in packets
            if p[0] == "udp" and p[1] == src and p[3] == PORT
            and p[4][:3] == bytes((sleeve.VERSION, 1, 1))]


# -- the network ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net(lab3: Lab):
    h1, h2, _ = lab3.hosts
    weave(h1, "launch", "10.0.0.1/16", "-password", PASSWORD)
    weave(h2, "launch", "10.0.0.2/16", "-password", PASSWORD, h1.ip)
    c = {
        "a1": weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox"),
        "a2": weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox"),
    }
    eventually_pings(h1, c["a1"], "10.0.1.2")
    yield lab3, c
    for h in lab3.hosts:
        h.run(["weave", "reset"], check=False)


def exchange_secret(h1: Host, h2: Host, c: dict, port: int) -> None:
    """a2 sends SECRET to a1 over TCP and UDP; a1 must receive both."""
    h1.exec_in_container(c["a1"], ["sh", "-c", f"nc -l -p {port} > /tmp/tcp{port} &"])
    h1.exec_in_container(c["a1"], ["sh", "-c", f"nc.openbsd -u -l {port + 1} > /tmp/udp{port} &"])
    wait_listening(h1, port, container=c["a1"])
    wait_listening(h1, port + 1, udp=True, container=c["a1"])
    h2.exec_in_container(c["a2"], ["sh", "-c", f"echo {SECRET} | nc 10.0.1.1 {port}"], timeout=30)
    h2.exec_in_container(
        c["a2"], ["sh", "-c", f"echo {SECRET} | nc.openbsd -u -w1 10.0.1.1 {port + 1}"],
        timeout=30)

    def got() -> bool:
        out = [h1.exec_in_container(c["a1"], ["cat", f"/tmp/{k}{port}"], check=False).stdout
               for k in ("tcp", "udp")]
        return all(SECRET in o for o in out)

    wait_for(got, 10, "the string over TCP and UDP")


def test_containers_talk_and_the_underlay_carries_no_plaintext(net, tmp_path: Path) -> None:
    lab, c = net
    h1, h2, _ = lab.hosts
    with capture(h1, tmp_path / "talk.pcap") as pcap:
        eventually_pings(h2, c["a2"], "10.0.1.1")
        exchange_secret(h1, h2, c, 4422)
    packets = assert_no_plaintext(pcap)
    assert sealed_datagrams(packets, h2.ip), "no sealed sleeve datagrams were captured"
    # encrypted peers never use the fast datapath: nothing at all by VXLAN (UDP 6784)
    vxlan = [p for p in pcap_payloads(pcap) if 6784 in (p[2], p[3])]
    assert not vxlan, f"{len(vxlan)} packets by VXLAN between encrypted peers"
    assert not [p for p in packets if p[0] == "udp" and p[4][:2] == bytes((sleeve.VERSION, 1))
                and p[4][2] == 0], "clear frame datagrams on the underlay"


def test_status_says_encryption_is_on_and_marks_the_connection_encrypted(net) -> None:
    lab, _ = net
    h1, h2, _ = lab.hosts
    for h in (h1, h2):
        # The connection rows ride on gossip's heartbeats: wait for the established one.
        rows = wait_for(lambda h=h: established_rows(h), 10,
                        f"{h.name}'s established connection in status")
        assert all(r["encrypted"] is True for r in rows), rows
        text = weave(h, "status")
        assert "Encryption: on" in text
        assert "encrypted" in text


def established_rows(host: Host) -> list[dict]:
    return [r for r in actor_status(host, "gossip").get("connections", [])
            if r["state"] == "established"]


def refusal_infos(host: Host) -> list[str]:
    return [f"{r.get('state')}: {r.get('info')}"
            for r in actor_status(host, "gossip").get("connections", [])]


def test_wrong_or_no_password_is_refused_on_both_sides_and_not_retried(net) -> None:
    lab, c = net
    h1, _, h3 = lab.hosts
    for args, mine, theirs in (
        (["-password", OTHER_PASSWORD], "password mismatch", "password mismatch"),
        ([], "remote peer requires encryption", "remote peer does not use encryption"),
    ):
        seen = len(log_events(h3, "connection_refused"))
        weave(h3, "launch", "10.0.0.3/16", *args, h1.ip)
        a3 = weave(h3, "run", "10.0.1.3/24", "-t", "-i", "busybox")
        try:
            wait_for(lambda m=mine: any(m in i for i in refusal_infos(h3)), 20,
                     f"{mine!r} on host3")
            wait_for(lambda t=theirs: any(t in i for i in refusal_infos(h1)), 20,
                     f"{theirs!r} on host1")
            assert not container_pings(h3, a3, "10.0.1.1")
            assert not container_pings(h1, c["a1"], "10.0.1.3")
            refused = [e for e in log_events(h3, "connection_refused")[seen:]
                       if e.get("reason") == mine]
            assert refused, "host3 did not log the refusal"
            assert any(e.get("reason") == theirs for e in log_events(h1, "connection_refused"))
            before = len(log_events(h3, "connection_refused"))
            # The point is a span of time: a refused peer is not redialled for 10 s.
            holds_for(lambda n=before: len(log_events(h3, "connection_refused")) - n <= 2, 10,
                      "host3 leaving the refused peer alone (at most 2 more refusals)")
            fw = actor_status(h3, "forwarder")["counters"]
            assert fw.get("rx", 0) == 0, fw
        finally:
            h3.run(["docker", "rm", "-f", a3], check=False)
            weave(h3, "stop")


def test_the_password_is_nowhere_to_be_seen(net) -> None:
    lab, _ = net
    needle = PASSWORD.encode()
    ps = lab.hosts[0].run(["ps", "-eo", "args"]).stdout
    assert PASSWORD not in ps
    for h in lab.hosts:
        assert PASSWORD not in h.run(["weave", "logs"], check=False).stdout
        assert PASSWORD not in h.run(["weave", "status", "--json"], check=False).stdout
        for root, _, files in os.walk(h.state_dir):
            for name in files:
                p = Path(root, name)
                if p.is_file() and not p.is_symlink():
                    assert needle not in p.read_bytes(), f"the password is in {p}"


REPLAY = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(bytes.fromhex(sys.argv[1]), (sys.argv[2], 6783))
"""


def test_a_replayed_datagram_is_dropped_and_counted(net, tmp_path: Path) -> None:
    lab, c = net
    h1, h2, _ = lab.hosts
    with capture(h1, tmp_path / "replay.pcap") as pcap:
        eventually_pings(h2, c["a2"], "10.0.1.1")
    sealed = sealed_datagrams(pcap_payloads(pcap), h2.ip)
    assert sealed, "no sealed datagram from host2 to replay"
    replayed = actor_status(h1, "crypto")["counters"]["replayed"]
    h2.run([sys.executable, "-c", REPLAY, sealed[-1].hex(), h1.ip])
    wait_for(lambda: actor_status(h1, "crypto")["counters"]["replayed"] > replayed, 10,
             "the replay to be counted")


@pytest.mark.parametrize("name", ["crypto", "gossip"])
def test_killed_actor_during_a_ping_traffic_resumes_encrypted(net, tmp_path: Path,
                                                              name: str) -> None:
    lab, c = net
    h1, h2, _ = lab.hosts
    with capture(h1, tmp_path / f"kill-{name}.pcap") as pcap:
        pinger = h1.popen(["docker", "exec", c["a1"], "ping", "-i", "0.2", "-w", "30",
                           "10.0.1.2"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True)
        try:
            assert pinger.stdout is not None
            # Kill only once the pings get answers: the actor dies under live traffic.
            wait_for(lambda: "bytes from" in pinger.stdout.readline(), 15,
                     "the first answered ping")
            pid = actor(h1, name)["pid"]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: actor(h1, name)["pid"] not in (pid, None), 20,
                     f"a new {name} actor")
            took = eventually_pings(h1, c["a1"], "10.0.1.2", timeout=15)
            assert took < 10, f"traffic resumed {took:.1f}s after {name} was killed"
            exchange_secret(h1, h2, c, 4500 if name == "crypto" else 4600)
        finally:
            os.kill(pinger.pid, signal.SIGKILL)
            pinger.wait(timeout=10)
    packets = assert_no_plaintext(pcap)
    assert sealed_datagrams(packets, h2.ip)
    rows = wait_for(lambda: established_rows(h1), 10, "host1's established connection")
    assert all(r["encrypted"] for r in rows), rows
