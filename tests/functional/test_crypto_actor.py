"""The crypto actor as a process: key installs over the bus, batches sealed and opened over its
data socket. No root needed: a fake supervisor (a ROUTER on actors.sock) stands in for the real
one, and the test plays both the gossip actor (installs) and the forwarder (a DEALER)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from weavenet.crypto.keys import HandshakeParty, KeyExchange, Password, Role, SessionKeys
from weavenet.crypto.protocol import (
    OVERHEAD,
    ForgetKeys,
    Install,
    Reply,
    decode_reply,
    encode_request,
)
from weavenet.runtime import bus
from weavenet.runtime.bus import Envelope

REPO = Path(__file__).resolve().parents[2]
PEER_A = "aa:00:00:00:00:0a"
PEER_B = "bb:00:00:00:00:0b"


def session_pair(connection_id: int) -> tuple[SessionKeys, SessionKeys]:
    """Real mirrored session keys for A (dialing) and B, as the two gossip actors derive them."""
    password = Password.from_derived(os.urandom(32))  # skip Argon2: its cost is not under test
    ex_a, ex_b = KeyExchange(password), KeyExchange(password)
    a = HandshakeParty(PEER_A, 1, connection_id, ex_a.public_key)
    b = HandshakeParty(PEER_B, 2, connection_id, ex_b.public_key)
    return ex_a.complete(Role.INITIATOR, a, b), ex_b.complete(Role.RESPONDER, b, a)


class FakeSupervisor:
    """Binds actors.sock, writes the launch config, starts `python -m actors.crypto RUN_DIR`."""

    def __init__(self, base: Path) -> None:
        self.run_dir, self.state_dir = base / "run", base / "state"
        self.endpoints = bus.Endpoints(self.run_dir)
        self.endpoints.prepare()
        self.state_dir.mkdir(mode=0o700)
        with open(self.endpoints.config, "wb") as f:
            f.write(msgpack.packb({"state_dir": str(self.state_dir), "debug": False}))
        self.ctx = zmq.Context()
        self.bus = self.ctx.socket(zmq.ROUTER)
        self.bus.setsockopt(zmq.LINGER, 0)
        self.bus.bind(self.endpoints.actors)
        self.status: dict[str, Any] = {}
        self.replies: dict[str, Envelope] = {}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "actors.crypto", str(self.run_dir)],
                                     cwd=REPO, env=env, stdin=subprocess.DEVNULL)

    def _pump(self, timeout: float) -> Envelope | None:
        if not self.bus.poll(int(timeout * 1000)):
            return None
        ident, data = self.bus.recv_multipart()
        assert ident == b"crypto"
        env = bus.decode(data)
        if env.type == "actor.heartbeat":
            self.status = env.body["status"]
        elif env.is_reply:
            self.replies[env.in_reply_to or ""] = env
        return env

    def wait_for(self, predicate: Callable[[Envelope], bool], what: str,
                 timeout: float = 10.0) -> Envelope:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            assert self.proc.poll() is None, f"crypto actor exited ({self.proc.returncode})"
            env = self._pump(min(left, 0.2))
            if env is not None and predicate(env):
                return env
        raise AssertionError(f"timed out waiting for {what}")

    def wait_ready(self) -> None:
        self.wait_for(lambda e: e.type == "actor.ready", "actor.ready")

    def request(self, type_: str, body: dict[str, Any]) -> Envelope:
        """Send a request as the supervisor relays gossip's, and wait for the reply."""
        req = bus.request(type_, body, src="gossip")
        self.bus.send_multipart([b"crypto", bus.encode(req)])
        if req.id in self.replies:
            return self.replies.pop(req.id)
        return self.wait_for(lambda e: e.in_reply_to == req.id, f"reply to {type_}")

    def install(self, peer: str, epoch: int, udp_send: bytes, udp_recv: bytes) -> None:
        self.request("crypto.install", Install(peer, epoch, udp_send, udp_recv).to_body()
                     ).raise_for_error()

    def counters_become(self, expected: dict[str, int], timeout: float = 5.0) -> dict[str, int]:
        """Wait for a heartbeat whose counters include `expected` exactly."""
        def matches(_: Envelope) -> bool:
            counters = self.status.get("counters", {})
            return all(counters.get(k) == v for k, v in expected.items())

        try:
            self.wait_for(matches, f"counters {expected}", timeout)
        except AssertionError:
            raise AssertionError(f"counters {self.status.get('counters')} never matched "
                                 f"{expected}") from None
        return self.status["counters"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ctx.destroy(linger=0)


class Forwarder:
    """The forwarder's side of the data socket: a DEALER sending batches."""

    def __init__(self, ctx: zmq.Context, endpoint: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def send(self, op: str, peer: str, payloads: list[bytes], tag: Any = None) -> None:
        self.sock.send_multipart(encode_request(op, peer, payloads, tag), copy=False)

    def recv(self, timeout: float = 5.0) -> tuple[Reply, list[bytes]]:
        assert self.sock.poll(int(timeout * 1000)), "no reply from the crypto actor"
        reply, results = decode_reply(self.sock.recv_multipart())
        return reply, [bytes(r) for r in results]

    def call(self, op: str, peer: str, payloads: list[bytes], tag: Any = None
             ) -> tuple[Reply, list[bytes]]:
        self.send(op, peer, payloads, tag)
        return self.recv()


@pytest.fixture
def sup() -> Iterator[FakeSupervisor]:
    # a short base path: ipc socket paths are limited to 107 bytes
    base = Path(tempfile.mkdtemp(prefix="wn-crypto-", dir="/tmp"))
    s = FakeSupervisor(base)
    try:
        s.wait_ready()
        yield s
    finally:
        s.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fwd(sup: FakeSupervisor) -> Forwarder:
    return Forwarder(sup.ctx, sup.endpoints.crypto)


@pytest.fixture
def keys(sup: FakeSupervisor) -> tuple[SessionKeys, SessionKeys]:
    """One actor plays both routers: it holds A's keys for peer B and B's keys for peer A."""
    ka, kb = session_pair(connection_id=7)
    sup.install(PEER_B, 7, ka.udp_send, ka.udp_recv)  # A's view of its connection to B
    sup.install(PEER_A, 7, kb.udp_send, kb.udp_recv)  # B's view of its connection to A
    return ka, kb


def seq_of(datagram: bytes) -> int:
    return int.from_bytes(datagram[:8], "big")


def test_a_batch_sealed_for_b_opens_at_b_in_order(sup, fwd, keys):
    payloads = [os.urandom(1400) for _ in range(64)]
    reply, sealed = fwd.call("seal", PEER_B, payloads, tag={"dst": PEER_B, "n": 1})
    assert (reply.op, reply.peer, reply.tag, reply.epoch, reply.failed) == (
        "seal", PEER_B, {"dst": PEER_B, "n": 1}, 7, 0)
    assert [len(d) for d in sealed] == [1400 + OVERHEAD] * 64
    assert [seq_of(d) for d in sealed] == list(range(64))
    assert all(p[:32] not in d for p, d in zip(payloads, sealed, strict=True))

    reply, opened = fwd.call("open", PEER_A, sealed, tag=42)
    assert (reply.op, reply.peer, reply.tag, reply.epoch, reply.failed) == (
        "open", PEER_A, 42, 7, 0)
    assert opened == payloads
    sup.counters_become({"sealed": 64, "opened": 64, "forged": 0, "no_keys": 0})
    assert sup.status["peers"] == 2


def test_session_keys_never_reach_the_log(sup, fwd, keys):
    fwd.call("seal", PEER_B, [b"x" * 100])
    sup.counters_become({"sealed": 1})
    log = (sup.state_dir / "weave.log").read_bytes()
    assert b"keys_installed" in log  # the log is being written, and names the event
    for k in (keys[0].udp_send, keys[0].udp_recv):
        assert k.hex().encode() not in log and k not in log and repr(k).encode() not in log


def test_tampered_and_replayed_datagrams_come_back_empty_and_are_counted(sup, fwd, keys):
    payloads = [b"frame-%d" % i * 50 for i in range(3)]
    _, sealed = fwd.call("seal", PEER_B, payloads)
    tampered = bytearray(sealed[1])
    tampered[-1] ^= 0x01
    reply, opened = fwd.call("open", PEER_A, [sealed[0], bytes(tampered), sealed[2], sealed[0]])
    assert opened == [payloads[0], b"", payloads[2], b""]
    assert reply.failed == 2
    # the forgery did not burn the genuine datagram's sequence number
    _, late = fwd.call("open", PEER_A, [sealed[1], sealed[1]])
    assert late == [payloads[1], b""]
    sup.counters_become({"opened": 3, "forged": 1, "replayed": 2, "malformed": 0})


def test_sealing_for_a_peer_without_keys_fails_every_item(sup, fwd, keys):
    reply, sealed = fwd.call("seal", "cc:00:00:00:00:0c", [b"a" * 10] * 5, tag="t")
    assert sealed == [b""] * 5
    assert (reply.epoch, reply.failed, reply.tag) == (None, 5, "t")
    sup.request("crypto.forget", ForgetKeys(PEER_B).to_body()).raise_for_error()
    reply, sealed = fwd.call("seal", PEER_B, [b"b" * 10] * 3)
    assert sealed == [b""] * 3 and reply.failed == 3
    sup.counters_become({"no_keys": 8, "sealed": 0})
    assert sup.status["peers"] == 1


def test_short_empty_and_oversized_items_fail_alone(sup, fwd, keys):
    reply, sealed = fwd.call("seal", PEER_B, [b"", b"ok", b"z" * 70000])
    assert sealed[0] == b"" and sealed[2] == b"" and len(sealed[1]) == 2 + OVERHEAD
    assert reply.failed == 2
    _, opened = fwd.call("open", PEER_A, [b"short", sealed[1]])
    assert opened == [b"", b"ok"]
    sup.counters_become({"malformed": 3, "sealed": 1, "opened": 1})


def test_new_epoch_restarts_the_sequence_under_a_new_key(sup, fwd, keys):
    plain = b"the same plaintext every time" * 40
    _, first = fwd.call("seal", PEER_B, [plain, plain])
    assert [seq_of(d) for d in first] == [0, 1] and first[0] != first[1]

    # the identical install again (a retried request) must not reset the counter
    ka, kb = keys
    sup.install(PEER_B, 7, ka.udp_send, ka.udp_recv)
    _, again = fwd.call("seal", PEER_B, [plain])
    assert seq_of(again[0]) == 2

    na, nb = session_pair(connection_id=8)
    sup.install(PEER_B, 8, na.udp_send, na.udp_recv)
    reply, second = fwd.call("seal", PEER_B, [plain])
    assert reply.epoch == 8
    assert seq_of(second[0]) == 0
    assert second[0] != first[0]  # same seq, same plaintext: only a new key makes it differ

    # B re-keys too; a datagram A sealed under the old keys while in flight still opens
    sup.install(PEER_A, 8, nb.udp_send, nb.udp_recv)
    reply, opened = fwd.call("open", PEER_A, [second[0], again[0]])
    assert opened == [plain, plain] and reply.epoch == 8

    # a key seen before is never installed again, for any epoch or peer: an old send key's
    # counter would restart, an old receive key's replay window would forget what it saw
    for peer, send, recv in ((PEER_B, ka.udp_send, os.urandom(32)),
                             (PEER_A, os.urandom(32), kb.udp_recv),
                             ("cc:00:00:00:00:0c", na.udp_send, os.urandom(32))):
        refused = sup.request("crypto.install", Install(peer, 9, send, recv).to_body())
        assert refused.ok is False and refused.error["code"] == bus.USAGE
    _, third = fwd.call("seal", PEER_B, [plain])
    assert seq_of(third[0]) == 1  # still the epoch-8 sealer


def test_malformed_requests_are_dropped_and_the_actor_keeps_serving(sup, fwd, keys):
    bad = [
        [os.urandom(40), b"payload"],  # header is not msgpack (or not a map)
        [msgpack.packb({"op": "seal"}), b"payload"],  # no peer
        [msgpack.packb({"peer": PEER_B}), b"payload"],  # no op
        [msgpack.packb({"op": "shred", "peer": PEER_B}), b"payload"],  # unknown op
        [msgpack.packb({"op": "seal", "peer": 5}), b"payload"],  # peer of the wrong type
        [msgpack.packb([1, 2, 3]), b"payload"],  # not a map
        [msgpack.packb({"op": "seal", "peer": PEER_B})],  # no payloads at all
        [b"\xc1"],  # reserved msgpack byte, alone
    ]
    for parts in bad:
        fwd.sock.send_multipart(parts)
    reply, sealed = fwd.call("seal", PEER_B, [b"still here"], tag="after")
    assert reply.tag == "after" and reply.failed == 0 and len(sealed[0]) == 10 + OVERHEAD
    assert not fwd.sock.poll(200), "a malformed request got an answer"
    assert sup.proc.poll() is None
    sup.counters_become({"bad_request": len(bad), "sealed": 1})

    for body in ({"peer": PEER_B, "epoch": 1, "udp_send": b"short", "udp_recv": os.urandom(32)},
                 {"peer": PEER_B, "epoch": -1, "udp_send": os.urandom(32),
                  "udp_recv": os.urandom(32)},
                 {"epoch": 1, "udp_send": os.urandom(32), "udp_recv": os.urandom(32)},
                 {"peer": PEER_B, "epoch": 1, "udp_send": bytes(32), "udp_recv": bytes(32)}):
        r = sup.request("crypto.install", body)
        assert r.ok is False and r.error["code"] == bus.USAGE
    assert sup.request("crypto.forget", {}).ok is False
    assert sup.proc.poll() is None
