"""The sealed FRAMES datagram: the sleeve's clear prefix followed by the crypto actor's blob.

With encryption every FRAMES datagram's body goes through the crypto actor. A sealed datagram
is the first :data:`SEALED_PREFIX_LEN` bytes of the sleeve outer header (version, kind, flags
with ENCRYPTED, reserved, sender) followed by the crypto actor's ``seq || MAC || ciphertext``
of the FRAMES body: the sealed blob's sequence number sits exactly where the clear header has
its ``seq``, so :func:`weavenet.dataplane.sleeve.parse_header` reads sealed and clear
datagrams alike. The datagram is :data:`SEAL_EXTRA` bytes longer sealed (the MAC), which the
forwarder takes off each path's datagram budget. Heartbeats and PMTU probes stay in clear:
they carry tokens and sizes, never container data, and are authenticated instead, with keys
derived from the connection's session keys (:mod:`weavenet.dataplane.control_auth`).
"""

from __future__ import annotations

import struct

from weavenet.crypto.protocol import OVERHEAD
from weavenet.dataplane.frame import Buffer
from weavenet.dataplane.sleeve import (
    ENCRYPTED,
    FRAMES,
    OUTER_LEN,
    VERSION,
    FramesHeader,
    Header,
    unpack_frames,
)

SEALED_PREFIX_LEN = 12  # version, kind, flags, reserved, sender: the outer header before seq
SEAL_EXTRA = SEALED_PREFIX_LEN + OVERHEAD - OUTER_LEN  # bytes a datagram grows when sealed

_OPENED = Header(FRAMES, 0, 0, 0)  # what unpack_frames needs of the header: only the kind


def sealed_prefix(sender: int) -> bytes:
    """The clear bytes in front of every sealed FRAMES datagram ``sender`` sends."""
    return struct.pack("!BBBBQ", VERSION, FRAMES, ENCRYPTED, 0, sender)


def unpack_opened(body: Buffer) -> tuple[FramesHeader, list[memoryview]]:
    """The frames of a FRAMES body the crypto actor opened (raises SleeveError)."""
    return unpack_frames(_OPENED, body)
