"""The sealed sleeve datagram layout: the clear prefix plus the crypto actor's sealed blob."""

from __future__ import annotations

from weavenet.crypto.seal import DatagramOpener, DatagramSealer
from weavenet.dataplane.sealed import SEAL_EXTRA, SEALED_PREFIX_LEN
from weavenet.dataplane.sleeve import (
    ENCRYPTED,
    FRAMES,
    OUTER_LEN,
    build_outer,
    pack_datagram,
    parse_header,
    unpack_frames,
)

ME = 0x020000000001


def seal_like_the_forwarder(datagram: bytes, sealer: DatagramSealer) -> bytes:
    prefix = build_outer(FRAMES, ENCRYPTED, ME, 0)[:SEALED_PREFIX_LEN]
    return prefix + sealer.seal(datagram[OUTER_LEN:])


def test_a_sealed_datagram_parses_like_a_clear_one_with_the_sealed_sequence_number() -> None:
    sealer = DatagramSealer(b"k" * 32)
    frames = [b"\x00" * 10 + b"frame-%d" % i for i in range(3)]
    clear = pack_datagram(frames, 1472, sender=ME, src_peer=ME, dst_peer=0).datagrams[0]
    seal_like_the_forwarder(clear, sealer)  # seq 0
    sealed = seal_like_the_forwarder(clear, sealer)  # seq 1
    hdr = parse_header(sealed)
    assert (hdr.kind, hdr.flags, hdr.sender, hdr.seq) == (FRAMES, ENCRYPTED, ME, 1)
    assert len(sealed) == len(clear) + SEAL_EXTRA
    body = DatagramOpener(b"k" * 32).open(sealed[SEALED_PREFIX_LEN:])
    _, got = unpack_frames(hdr, body)
    assert [bytes(f) for f in got] == frames


def test_the_clear_payload_is_not_visible_in_a_sealed_datagram() -> None:
    frame = b"\x00" * 10 + b"zyxxy-plaintext-canary" * 4
    clear = pack_datagram([frame], 1472, sender=ME, src_peer=ME, dst_peer=0).datagrams[0]
    sealed = seal_like_the_forwarder(clear, DatagramSealer(b"k" * 32))
    assert b"zyxxy" in clear and b"zyxxy" not in sealed
