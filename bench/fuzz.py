"""Fuzz every decoder that reads untrusted input, and count what escapes it.

Each decoder gets random inputs, most of them mutations of valid ones (bit flips, truncation,
spliced bytes, fields replaced by boundary values such as 2**63 and 2**64-1), for a number of
inputs or a time budget, whichever ends first. A failure is any exception other than the
decoder's own error type, or a decoded value that breaks a range promise (a gossiped version
that cannot be incremented and re-encoded, an envelope that does not re-encode to itself).

    .venv/bin/python bench/fuzz.py [--inputs 100000] [--seconds 60] [--seed N] [--only NAME]

Prints, per decoder, the inputs tried and the failures (with the first few examples); exits 1
if anything failed. Sans-IO: no sockets, no root.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from weavenet.crypto.keys import Password  # noqa: E402
from weavenet.dataplane import sleeve  # noqa: E402
from weavenet.mesh.connection import new_handshake  # noqa: E402
from weavenet.mesh.handshake import HandshakeConfig  # noqa: E402
from weavenet.mesh.peer import Peer, PeerName  # noqa: E402
from weavenet.mesh.topology import (  # noqa: E402
    MAX_UINT64,
    MAX_VERSION,
    Connection,
    PeerRecord,
    encode_record,
)
from weavenet.mesh.wire import (  # noqa: E402
    Decoder,
    Goodbye,
    Heartbeat,
    Hello,
    Proof,
    TopologyUpdate,
    WireError,
    encode,
    encode_body,
    encode_header,
)
from weavenet.runtime import bus  # noqa: E402
from weavenet.runtime.control import CONTROL_REQUESTS, Target  # noqa: E402
from weavenet.runtime.request import UsageError  # noqa: E402

BOUNDARY_INTS = [0, 1, -1, 255, 256, 65535, 65536, 2**31, 2**32 - 1, 2**32, 2**62,
                 2**63 - 1, 2**63, MAX_UINT64, -(2**63)]
EXAMPLES_SHOWN = 3


class RangeBroken(Exception):
    """A decoder accepted a value it promised to refuse."""


# -- random values --------------------------------------------------------------------------------


def scalar(rng: random.Random) -> Any:
    pick = rng.randrange(9)
    if pick == 0:
        return rng.choice(BOUNDARY_INTS)
    if pick == 1:
        return rng.getrandbits(rng.choice((8, 32, 64))) - (2**63 if rng.random() < 0.2 else 0)
    if pick == 2:
        return rng.choice((True, False, None))
    if pick == 3:
        return rng.choice((0.0, -1.5, float("nan"), float("inf"), 1e308))
    if pick == 4:
        return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(20)))
    if pick == 5:
        return rng.choice(("", "x" * 300, "a\nb", "\x00", "02:00:00:00:00:01", "\udc80"[:0]))
    if pick == 6:
        return rng.randbytes(rng.choice((0, 1, 16, 32, 33)))
    if pick == 7:
        return "é" * rng.randrange(2000)
    return rng.randrange(-10, 70000)


def value(rng: random.Random, depth: int = 0) -> Any:
    if depth < 3 and rng.random() < 0.25:
        if rng.random() < 0.5:
            return [value(rng, depth + 1) for _ in range(rng.randrange(5))]
        return {scalar(rng) if rng.random() < 0.2 else str(scalar(rng))[:10]:
                value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return scalar(rng)


def mutate_map(rng: random.Random, obj: dict[str, Any]) -> dict[str, Any]:
    """Replace, drop or add a few fields (recursing into lists of maps now and then)."""
    out = dict(obj)
    for _ in range(rng.randrange(1, 4)):
        keys = list(out)
        action = rng.randrange(4)
        if action == 0 and keys:
            key = rng.choice(keys)
            # an int field gets a boundary value half the time: that is where ranges break
            out[key] = (rng.choice(BOUNDARY_INTS)
                        if type(out[key]) is int and rng.random() < 0.5 else value(rng))
        elif action == 1 and keys:
            del out[rng.choice(keys)]
        elif action == 2:
            out[str(rng.choice(keys or ["x"])) + rng.choice(("", "_"))] = value(rng)
        elif keys:
            key = rng.choice(keys)
            inner = out[key]
            if isinstance(inner, list) and inner and isinstance(inner[0], dict):
                out[key] = [mutate_map(rng, x) if isinstance(x, dict) and rng.random() < 0.5
                            else x for x in inner]
            elif isinstance(inner, dict):
                out[key] = mutate_map(rng, inner)
    return out


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        action = rng.randrange(5)
        if action == 0 and buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif action == 1 and buf:
            del buf[rng.randrange(len(buf)):]
        elif action == 2:
            at = rng.randrange(len(buf) + 1)
            buf[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif action == 3 and buf:
            buf[rng.randrange(len(buf))] = rng.choice((0x00, 0x7F, 0x80, 0xFF, 0xC1, 0xCF, 0xD3))
        elif buf:
            at = rng.randrange(len(buf))
            buf[at:at] = buf[: rng.randrange(1, 16)]
    return bytes(buf)


def name(rng: random.Random) -> PeerName:
    return PeerName(":".join(f"{b:02x}" for b in rng.randbytes(6)))


def record(rng: random.Random) -> PeerRecord:
    me = name(rng)
    conns = {c.peer: c for c in (Connection(name(rng), f"198.18.0.{rng.randrange(256)}:6783",
                                            rng.random() < 0.5, rng.random() < 0.5)
                                 for _ in range(rng.randrange(3))) if c.peer != me}
    return PeerRecord(me, "host", rng.getrandbits(64), rng.getrandbits(63),
                      tuple(sorted(conns.values())))


def message_map(rng: random.Random) -> dict[str, Any]:
    pick = rng.randrange(5)
    if pick == 0:
        key = rng.randbytes(32) if rng.random() < 0.5 else None
        msg: Any = Hello(name(rng), "n", rng.getrandbits(64), rng.getrandbits(64),
                         key is not None, key, rng.randrange(1, 65536))
    elif pick == 1:
        msg = TopologyUpdate(tuple(record(rng) for _ in range(rng.randrange(3))))
    elif pick == 2:
        msg = Heartbeat(rng.getrandbits(64))
    elif pick == 3:
        msg = Goodbye("bye")
    else:
        msg = Proof(rng.randbytes(32))
    return msgpack.unpackb(encode_body(msg), raw=False)


def framed(obj: Any) -> bytes:
    body = msgpack.packb(obj, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


def forged_update(rng: random.Random) -> dict[str, Any]:
    """A topology update of valid records but for one field of one record: what a peer that
    completed a handshake can forge."""
    records = [encode_record(record(rng)) for _ in range(rng.randrange(1, 4))]
    forged = rng.choice(records)
    key = rng.choice(("uid", "ver", "ver", "nick", "conns", "name"))
    forged[key] = rng.choice(BOUNDARY_INTS) if rng.random() < 0.7 else value(rng)
    return {"type": "topology", "records": records}


def wire_stream(rng: random.Random) -> bytes:
    parts = [encode_header() if rng.random() < 0.9 else rng.randbytes(10)]
    for _ in range(rng.randrange(1, 4)):
        pick = rng.random()
        obj = forged_update(rng) if pick < 0.3 else message_map(rng)
        if pick > 0.6:
            obj = mutate_map(rng, obj)
        parts.append(framed(obj))
    data = b"".join(parts)
    return mutate_bytes(rng, data) if rng.random() < 0.3 else data


# -- decoders: (make an input, decode it and check the promises) ---------------------------------


def check_message(item: Any) -> None:
    if isinstance(item, TopologyUpdate):
        for rec in item.records:
            if rec.version > MAX_VERSION:
                raise RangeBroken(f"record version {rec.version} accepted")
            msgpack.packb(encode_record(rec))
            msgpack.packb(rec.version + 1)  # the owner outranking it must still encode
    if not hasattr(item, "min_version"):
        encode(item)


def decode_wire(data: bytes) -> None:
    decoder = Decoder(handshake_limit=8192 if data[:1] == b"w" and len(data) % 2 else None)
    for item in decoder.feed(data):
        check_message(item)
    decoder.end_handshake()
    for item in decoder.feed(b""):
        check_message(item)


PASSWORD = Password.from_derived(b"f" * 32)  # skips Argon2id: the proof is random anyway
LOCAL = Peer(PeerName("02:00:00:00:00:01"), "local", 7)


def decode_handshake(data: bytes) -> None:
    encrypt = len(data) % 2 == 1
    config = HandshakeConfig(LOCAL, encrypt=encrypt)
    handshake, decoder = new_handshake(config, PASSWORD if encrypt else None,
                                       outbound=data[-1:] == b"\x00", conn_id=1)
    handshake.start()
    for item in decoder.feed(data):
        step = handshake.receive(item)
        if step.outcome is not None:
            return


def handshake_input(rng: random.Random) -> bytes:
    parts = [encode_header()]
    key = rng.randbytes(32) if rng.random() < 0.5 else None
    hello = msgpack.unpackb(encode_body(Hello(name(rng), "r", rng.getrandbits(64), 3,
                                              key is not None, key, 6783)), raw=False)
    parts.append(framed(mutate_map(rng, hello) if rng.random() < 0.5 else hello))
    if rng.random() < 0.5:
        parts.append(framed(message_map(rng)))
    data = b"".join(parts)
    return mutate_bytes(rng, data) if rng.random() < 0.3 else data


def datagram_input(rng: random.Random) -> bytes:
    sender = rng.getrandbits(48)
    pick = rng.randrange(3)
    if pick == 0:
        frames = [rng.randbytes(rng.randrange(14, 200)) for _ in range(rng.randrange(1, 4))]
        data = sleeve.pack_datagram(frames, 1400, sender=sender, src_peer=rng.getrandbits(48) or 1,
                                    dst_peer=rng.getrandbits(48)).datagrams[0]
    elif pick == 1:
        data = sleeve.build_control(rng.choice(sorted(sleeve.CONTROL_KINDS)), sender=sender,
                                    token=rng.getrandbits(64), key=rng.randbytes(32),
                                    value=rng.getrandbits(32),
                                    size=rng.choice((0, 100, 1400)))
    else:
        whole = rng.randbytes(rng.randrange(100, 3000))
        groups = sleeve.split_datagram(whole, rng.randrange(100, 1500), sender=sender,
                                       frag_id=rng.getrandbits(64))
        data = bytes(rng.choice(rng.choice(groups)))
    return mutate_bytes(rng, data) if rng.random() < 0.6 else data


def decode_datagram(data: bytes) -> None:
    header = sleeve.parse_header(data)
    if header.kind == sleeve.FRAMES:
        if not header.flags & sleeve.ENCRYPTED:
            sleeve.unpack_datagram(data)
    elif header.kind == sleeve.FRAGMENT:
        piece = sleeve.parse_piece(header, data)
        if not piece.offset + len(piece.chunk) <= piece.total <= sleeve.MAX_DATAGRAM:
            raise RangeBroken(f"piece {piece.offset}+{len(piece.chunk)} of {piece.total}")
    elif not header.flags & sleeve.ENCRYPTED:
        sleeve.unpack_control(data)


REASSEMBLER = sleeve.Reassembler()


def pieces_input(rng: random.Random) -> bytes:
    whole = rng.randbytes(rng.randrange(100, 8000))
    size = rng.randrange(sleeve.PIECE_HEADER_LEN + 1, 1500)
    groups = sleeve.split_datagram(whole, size, sender=rng.getrandbits(48),
                                   frag_id=rng.getrandbits(8))
    pieces = [bytes(p) for g in groups for p in g]
    rng.shuffle(pieces)
    data = b"".join(p.ljust(size, b"\x00") if i < len(pieces) - 1 else p
                    for i, p in enumerate(pieces))
    return size.to_bytes(2, "big") + (mutate_bytes(rng, data) if rng.random() < 0.5 else data)


def decode_pieces(data: bytes) -> None:
    size = max(sleeve.PIECE_HEADER_LEN + 1, int.from_bytes(data[:2], "big") or 1)
    for item in sleeve.split_coalesced(data[2:], size):
        if isinstance(item, sleeve.Piece):
            whole = REASSEMBLER.add(item, time.monotonic())
            if whole is not None and len(whole) != item.total:
                raise RangeBroken(f"reassembled {len(whole)} of {item.total} bytes")
        else:
            decode_datagram(bytes(item)) if len(item) >= sleeve.OUTER_LEN else None
    if len(REASSEMBLER) > REASSEMBLER.max_pending:
        raise RangeBroken(f"{len(REASSEMBLER)} datagrams pending")


def envelope_input(rng: random.Random) -> bytes:
    env = bus.encode(bus.request(rng.choice(("status", "attach", "x" * 70)),
                                 {"k": value(rng)}, src="cli", inc=rng.getrandbits(63)))
    obj = msgpack.unpackb(env, raw=False, strict_map_key=False)
    if rng.random() < 0.6:
        obj = mutate_map(rng, obj)
    data = msgpack.packb(obj, use_bin_type=True)
    return mutate_bytes(rng, data) if rng.random() < 0.3 else data


def decode_envelope(data: bytes) -> None:
    env = bus.decode(data)
    again = bus.encode(env)
    if bus.encode(bus.decode(again)) != again:  # bytes, not ==: a NaN in a body is fine
        raise RangeBroken("an envelope that does not re-encode to itself")


def control_input(rng: random.Random) -> bytes:
    cls = rng.choice(CONTROL_REQUESTS)
    target = Target(netns="/proc/1/ns/net", key="c0ffee", label="web", container_id="c0ffee",
                    pid=1).to_body()
    body: dict[str, Any] = {"target": target, "cidrs": ["10.0.1.2/24"],
                            "peers": ["198.18.0.2:6783"], "cidr": "10.0.1.2/24"}
    if rng.random() < 0.8:
        body = mutate_map(rng, body)
    return bus.encode(bus.request(cls.TYPE, body, src="cli"))


CONTROL = {cls.TYPE: cls for cls in CONTROL_REQUESTS}


def decode_control(data: bytes) -> None:
    """As the supervisor does: the envelope, then the request named by its type."""
    env = bus.decode(data)
    CONTROL[env.type].from_body(env.body)


@dataclass
class Fuzzed:
    name: str
    make: Callable[[random.Random], bytes]
    decode: Callable[[bytes], None]
    errors: tuple[type[BaseException], ...]
    tried: int = 0
    accepted: int = 0  # inputs decoded without error: how deep the mutations reach
    failures: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)


def decoders() -> list[Fuzzed]:
    return [
        Fuzzed("wire", wire_stream, decode_wire, (WireError,)),
        Fuzzed("handshake", handshake_input, decode_handshake, (WireError,)),
        Fuzzed("sleeve-datagrams", datagram_input, decode_datagram, (sleeve.SleeveError,)),
        Fuzzed("sleeve-pieces", pieces_input, decode_pieces, (sleeve.SleeveError,)),
        Fuzzed("bus-envelope", envelope_input, decode_envelope, (bus.EnvelopeError,)),
        Fuzzed("control-requests", control_input, decode_control,
               (bus.EnvelopeError, UsageError)),
    ]


def run(fz: Fuzzed, rng: random.Random, inputs: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while fz.tried < inputs and (fz.tried % 256 or time.monotonic() < deadline):
        data = fz.make(rng)
        fz.tried += 1
        try:
            fz.decode(data)
            fz.accepted += 1
        except fz.errors:
            continue
        except Exception as exc:
            fz.failures += 1
            fz.kinds[type(exc).__name__] += 1
            if len(fz.examples) < EXAMPLES_SHOWN:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                fz.examples.append(f"{type(exc).__name__}: {str(exc)[:100]} "
                                   f"at {Path(where.filename).name}:{where.lineno} "
                                   f"input {data[:60].hex()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=100_000, help="per decoder (100000)")
    p.add_argument("--seconds", type=float, default=60.0, help="at most, per decoder (60)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--only", action="append", help="a decoder's name (repeatable)")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else random.randrange(2**32)
    print(f"seed {seed}")
    failed = 0
    for fz in decoders():
        if a.only and fz.name not in a.only:
            continue
        started = time.monotonic()
        run(fz, random.Random(f"{seed}:{fz.name}"), a.inputs, a.seconds)
        kinds = ", ".join(f"{k} x{n}" for k, n in fz.kinds.most_common()) or "-"
        print(f"{fz.name:18} {fz.tried:8} inputs {fz.accepted:8} accepted "
              f"{time.monotonic() - started:6.1f}s {fz.failures:6} failures  {kinds}")
        for example in fz.examples:
            print(f"    {example}")
        failed += fz.failures
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
