"""The clear prefix of a sealed FRAMES datagram and the bodies the crypto actor opens."""

from __future__ import annotations

import pytest

from weavenet.crypto.protocol import OVERHEAD
from weavenet.dataplane.sealed import SEAL_EXTRA, SEALED_PREFIX_LEN, sealed_prefix, unpack_opened
from weavenet.dataplane.sleeve import (
    ENCRYPTED,
    FRAMES,
    OUTER_LEN,
    SleeveError,
    build_outer,
    pack_datagram,
)

ME, PEER = 0x020000000001, 0x020000000002


def test_the_prefix_is_the_outer_header_up_to_the_sequence_number() -> None:
    assert sealed_prefix(ME) == build_outer(FRAMES, ENCRYPTED, ME, 0)[:SEALED_PREFIX_LEN]
    assert SEAL_EXTRA == SEALED_PREFIX_LEN + OVERHEAD - OUTER_LEN


def test_an_opened_body_unpacks_like_a_clear_frames_body() -> None:
    frames = [bytes(10) + b"hello", bytes(10) + b"world"]
    clear = pack_datagram(frames, 1472, sender=PEER, src_peer=PEER, dst_peer=ME).datagrams[0]
    fh, got = unpack_opened(clear[OUTER_LEN:])
    assert (fh.src_peer, fh.dst_peer) == (PEER, ME)
    assert [bytes(f) for f in got] == frames
    with pytest.raises(SleeveError):
        unpack_opened(b"\x00" * 3)
