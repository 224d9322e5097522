"""An attacker on the underlay: a stranger's namespace on the lab LAN (``Lab.stranger``) that
knows the peers' names and addresses but is not part of any TCP connection.

Spoofed heartbeats naming a known peer, clear and with a password: the peer's UDP path address
does not move, the containers keep talking, the attacker receives nothing (no frames, no frag
test, not even an ack), and the drop is counted in the forwarder's status.

A connection flood from the attacker (one process, as fast as it connects, for 25 s) while a
real peer is killed and restarted: the peer is connected again within 5 s of its launch, the
router's log grows by a bounded amount, its summed RSS by at most 20 MB, and back afterwards.

A handshake from the attacker (anyone can, without a password) followed by records at version
2**64 - 1 for both real peers: refused and counted, passed on to nobody, no actor exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import (
    actor_status,
    eventually_pings,
    ping_argv,
    replies,
    seconds_until,
    status,
    wait_for,
    weave,
)
from weavenet.lab import Host, Lab, underlay

pytestmark = [pytest.mark.root, pytest.mark.docker]

PASSWORD = "wEaVe"
PORT = 6783
ATTACKER = 200  # its address on the LAN: 198.18.0.200

# Run in the attacker's namespace: heartbeats claiming to come from `victim`, sent to `target`
# at ~`rate`/s for `seconds` from UDP 6783, while counting by kind every datagram that comes
# back (frames meant for the victim, a frag test, acks...). Prints a JSON summary.
SPOOF = r"""
import json, os, socket, sys, time
from weavenet.dataplane import sleeve
target, victim, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 6783))
sock.settimeout(0.001)
sender = sleeve.peer_to_wire(victim)
got, sent, seq = {}, 0, 1
start = time.monotonic()
end = start + seconds
while time.monotonic() < end + 1.0:
    now = time.monotonic()
    if now < end and sent < (now - start) * rate:
        seq += 1
        msg = sleeve.build_control(sleeve.HEARTBEAT, sender=sender, token=seq,
                                   key=os.urandom(32), seq=seq)
        sock.sendto(msg, (target, 6783))
        sent += 1
    try:
        data = sock.recv(65535)
    except TimeoutError:
        continue
    kind = data[1] if len(data) > 1 else -1
    got[kind] = got.get(kind, 0) + 1
print(json.dumps({"sent": sent, "received": got}))
"""


def launch_two(lab: Lab, password: bool) -> list[str]:
    """`weave launch` on host1, then on host2 naming host1; returns the options given."""
    h1, h2 = lab.hosts
    args = ["-password", PASSWORD] if password else []
    weave(h1, "launch", "10.0.0.1/16", *args)
    weave(h2, "launch", "10.0.0.2/16", *args, h1.ip)
    return args


def forwarder(host: Host) -> dict:
    return actor_status(host, "forwarder")


def path_addr(host: Host, peer: str) -> str | None:
    return forwarder(host).get("paths", {}).get(peer, {}).get("addr")


def drops(host: Host) -> dict:
    return forwarder(host).get("counters", {}).get("drops", {})


@pytest.mark.parametrize("password", [False, True], ids=["clear", "password"])
def test_spoofed_heartbeats_naming_a_known_peer_change_nothing(lab2: Lab, password: bool):
    h1, h2 = lab2.hosts
    launch_two(lab2, password)
    a1 = weave(h1, "run", "10.0.1.1/24", "-t", "-i", "busybox")
    a2 = weave(h2, "run", "10.0.1.2/24", "-t", "-i", "busybox")
    try:
        victim = status(h2)["peer"]["name"]
        genuine = f"{h2.ip}:{PORT}"
        wait_for(lambda: path_addr(h1, victim) == genuine
                 and forwarder(h1)["paths"][victim]["state"] == "ok", 30,
                 "host1's path to host2 to be up")
        eventually_pings(h1, a1, "10.0.1.2")
        forged_before = drops(h1).get("control_forged", 0)
        attacker = lab2.stranger(ATTACKER)
        spoof = subprocess.Popen(
            underlay.nsenter(attacker, [sys.executable, "-c", SPOOF, h1.ip, victim, "100", "6"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        addrs: list[str | None] = []
        sampler = threading.Thread(target=lambda: [addrs.append(path_addr(h1, victim))
                                                   for _ in range(6)])
        try:
            sampler.start()
            # 25 pings at 0.2 s while the attacker sends its ~600 heartbeats
            ping = h1.exec_in_container(a1, ping_argv("10.0.1.2", count=25), check=False,
                                        timeout=30)
            sampler.join(timeout=30)
            out, err = spoof.communicate(timeout=30)
        finally:
            if spoof.poll() is None:
                spoof.kill()
                spoof.wait()
        assert spoof.returncode == 0, err
        result = json.loads(out)
        assert result["sent"] >= 500, result
        assert result["received"] == {}, f"the attacker received datagrams: {result}"
        assert replies(ping.stdout) >= 23, ping.stdout  # at most a loss or two, as on any LAN
        assert set(addrs) == {genuine}, addrs
        assert path_addr(h1, victim) == genuine
        assert forwarder(h1)["paths"][victim]["state"] == "ok"
        # status rides on the actor's heartbeat: up to a second behind
        counted = wait_for(lambda: drops(h1).get("control_forged", 0) - forged_before >= 500
                           and drops(h1), 10, "the spoofed heartbeats to be counted")
        assert counted["control_forged"] - forged_before <= result["sent"], counted
    finally:
        for h, c in ((h1, a1), (h2, a2)):
            h.run(["docker", "rm", "-f", c], check=False)
            weave(h, "stop")


# Run in the attacker's namespace: TCP connections to `target`:6783 as fast as one process
# opens them, for `seconds`; the last 16 are held open (handshaking as long as the router lets
# them), older ones reset (SO_LINGER 0: no TIME_WAIT, so the source ports never run out).
FLOOD = r"""
import collections, json, socket, struct, sys, time
target, seconds = sys.argv[1], float(sys.argv[2])
reset = struct.pack("ii", 1, 0)
held = collections.deque()
made = failed = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
    s.settimeout(0.5)
    try:
        s.connect((target, 6783))
        made += 1
        held.append(s)
    except OSError:
        failed += 1
        s.close()
    while len(held) > 16:
        held.popleft().close()
print(json.dumps({"connections": made, "failed": failed}))
"""
FLOOD_SECONDS = 25
MB = 1024 * 1024


def router_pids(host: Host) -> list[int]:
    st = status(host)
    return [st["pid"], *(a["pid"] for a in st["actors"] if a["pid"])]


def rss(pids: list[int]) -> int:
    """The summed resident set of these processes, in bytes (those gone, zombies included,
    count nothing)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kb = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("VmRSS:")), "0")
        total += int(kb) * 1024
    return total


def connected(host: Host, peer: str, uid: int | None = None) -> bool:
    gossip = actor_status(host, "gossip")
    rows = gossip.get("connections", [])
    if not any(r.get("peer") == peer and r.get("state") == "established" for r in rows):
        return False
    return uid is None or any(p["name"] == peer and p["uid"] == uid
                              for p in gossip.get("peers", []))


@pytest.mark.parametrize("password", [False, True], ids=["clear", "password"])
def test_a_connection_flood_from_one_source_delays_no_real_peer(lab2: Lab, password: bool):
    h1, h2 = lab2.hosts
    args = launch_two(lab2, password)
    try:
        n1, n2 = status(h1)["peer"]["name"], status(h2)["peer"]["name"]
        wait_for(lambda: connected(h1, n2) and connected(h2, n1), 30, "host1 - host2")
        pids = router_pids(h1)
        log = h1.state_dir / "weave.log"
        base_rss, base_log = rss(pids), log.stat().st_size
        attacker = lab2.stranger(ATTACKER)
        flood = subprocess.Popen(
            underlay.nsenter(attacker, [sys.executable, "-c", FLOOD, h1.ip,
                                        str(FLOOD_SECONDS)]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        samples: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.5):
                samples.append(rss(pids))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            time.sleep(5)  # the flood is in full swing
            assert flood.poll() is None, flood.communicate()
            # host2's router killed and started again, mid-flood
            killed = router_pids(h2)
            for pid in killed:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_for(lambda: rss(killed) == 0, 10, "host2's router to be gone")
            weave(h2, "launch", "10.0.0.2/16", *args, h1.ip)
            uid = actor_status(h2, "gossip").get("peer", {}).get("uid") or wait_for(
                lambda: actor_status(h2, "gossip").get("peer", {}).get("uid"), 10,
                "host2's new gossip incarnation")
            took = seconds_until(lambda: connected(h1, n2, uid) and connected(h2, n1), 20,
                                 "the restarted host2 to be connected to host1 again")
            still_flooding = flood.poll() is None
            out, err = flood.communicate(timeout=FLOOD_SECONDS + 30)
        finally:
            sampling.set()
            sampler.join()
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        assert flood.returncode == 0, err
        made = json.loads(out)
        assert still_flooding, "the flood ended before host2 was back: the test proves nothing"
        assert made["connections"] >= 1000, made  # a flood, even on a loaded machine
        assert took <= 5.0, f"{took:.1f} s to reconnect during the flood ({made})"
        grown = log.stat().st_size - base_log
        assert grown <= 256 * 1024, f"weave.log grew by {grown} bytes during the flood"
        peak = max(samples, default=0) - base_rss
        assert peak <= 20 * MB, f"the router's RSS grew by {peak / MB:.1f} MB under the flood"
        wait_for(lambda: rss(pids) - base_rss <= 5 * MB, 30,
                 "the router's RSS to return after the flood")
        assert router_pids(h1) == pids, "an actor of host1 restarted during the flood"
        print(f"flood: {made}, reconnected in {took:.1f} s, log +{grown} B, "
              f"RSS +{peak / MB:.1f} MB at the peak")
    finally:
        for h in (h1, h2):
            weave(h, "stop")


# Run in the attacker's namespace: complete a handshake with `target` (anyone can, without a
# password) as a peer of its own, then gossip records at version 2**64 - 1 for two peers it
# names by "name:uid": one nobody can outrank or re-encode. Holds the connection `seconds`.
FORGE = r"""
import random, socket, sys, time
from weavenet.mesh.handshake import Accepted, Handshake, HandshakeConfig
from weavenet.mesh.peer import Peer, PeerName
from weavenet.mesh.topology import PeerRecord
from weavenet.mesh.wire import Decoder, TopologyUpdate, encode
target, seconds, victims = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
me = Peer(PeerName("02:00:00:00:06:66"), "mallory", random.getrandbits(63))
hs = Handshake(HandshakeConfig(me), outbound=True, conn_id=random.getrandbits(64))
sock = socket.create_connection((target, 6783), timeout=5)
sock.sendall(hs.start())
decoder, outcome = Decoder(), None
while outcome is None:
    data = sock.recv(65536)
    if not data:
        sys.exit("closed during the handshake")
    for item in decoder.feed(data):
        if outcome is None:
            step = hs.receive(item)
            sock.sendall(step.send)
            outcome = step.outcome
if not isinstance(outcome, Accepted):
    sys.exit(f"refused: {outcome}")
records = []
for victim in victims:
    name, uid = victim.split(":uid=")
    records.append(PeerRecord(PeerName(name), "forged", int(uid), 2**64 - 1))
sock.sendall(encode(TopologyUpdate(tuple(records))))
end = time.monotonic() + seconds
sock.settimeout(0.5)
while time.monotonic() < end:
    try:
        if not sock.recv(65536):
            break
    except TimeoutError:
        pass
print("sent", len(records))
"""


def actors(host: Host) -> dict[str, tuple[int, str, int]]:
    return {a["name"]: (a["pid"], a["state"], a["restarts"]) for a in status(host)["actors"]}


def test_a_forged_record_at_the_largest_version_is_refused_and_no_actor_exits(lab2: Lab):
    h1, h2 = lab2.hosts
    launch_two(lab2, password=False)
    try:
        n1, n2 = status(h1)["peer"]["name"], status(h2)["peer"]["name"]
        wait_for(lambda: connected(h1, n2) and connected(h2, n1), 30, "host1 - host2")
        uids = {p["name"]: p["uid"] for p in actor_status(h1, "gossip")["peers"]}
        before = {h.name: actors(h) for h in (h1, h2)}
        attacker = lab2.stranger(ATTACKER)
        forge = subprocess.run(
            underlay.nsenter(attacker, [sys.executable, "-c", FORGE, h1.ip, "5",
                                        f"{n1}:uid={uids[n1]}", f"{n2}:uid={uids[n2]}"]),
            capture_output=True, text=True, timeout=60)
        assert forge.returncode == 0, forge.stderr
        # status rides on the actor's heartbeat: up to a second behind
        wait_for(lambda: actor_status(h1, "gossip").get("refused_records") == 2, 10,
                 "host1 to refuse and count both forged records")
        for h in (h1, h2):
            assert actors(h) == before[h.name], f"an actor of {h.name} exited"
        assert actor_status(h2, "gossip").get("refused_records") == 0  # never passed on
        assert connected(h1, n2) and connected(h2, n1)
    finally:
        for h in (h1, h2):
            weave(h, "stop")
