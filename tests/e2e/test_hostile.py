"""An attacker on the underlay: a stranger's namespace on the lab LAN (``Lab.stranger``) that
knows the peers' names and addresses but is not part of any TCP connection.

Spoofed heartbeats naming a known peer, clear and with a password: the peer's UDP path address
does not move, the containers keep talking, the attacker receives nothing (no frames, no frag
test, not even an ack), and the drop is counted in the forwarder's status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.support import (
    actor_status,
    eventually_pings,
    ping_argv,
    replies,
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


def forwarder(host: Host) -> dict:
    return actor_status(host, "forwarder")


def path_addr(host: Host, peer: str) -> str | None:
    return forwarder(host).get("paths", {}).get(peer, {}).get("addr")


def drops(host: Host) -> dict:
    return forwarder(host).get("counters", {}).get("drops", {})


@pytest.mark.parametrize("password", [False, True], ids=["clear", "password"])
def test_spoofed_heartbeats_naming_a_known_peer_change_nothing(lab2: Lab, password: bool):
    h1, h2 = lab2.hosts
    args = ["-password", PASSWORD] if password else []
    weave(h1, "launch", "10.0.0.1/16", *args)
    weave(h2, "launch", "10.0.0.2/16", *args, h1.ip)
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
