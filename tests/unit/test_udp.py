"""The UDP GRO/GSO control messages the forwarder reads and writes."""

from __future__ import annotations

import socket
import struct
import sys

from weavenet.dataplane.udp import SOL_UDP, UDP_GRO, UDP_SEGMENT, gro_size, gso_cmsg


def test_the_gro_segment_size_comes_from_its_cmsg_as_an_int_or_a_u16() -> None:
    assert gro_size([(SOL_UDP, UDP_GRO, (1472).to_bytes(4, sys.byteorder))]) == 1472
    assert gro_size([(SOL_UDP, UDP_GRO, (1472).to_bytes(2, sys.byteorder))]) == 1472


def test_a_read_without_a_gro_cmsg_is_one_datagram() -> None:
    assert gro_size([]) == 0
    assert gro_size([(socket.SOL_SOCKET, UDP_GRO, b"\x01\x00\x00\x00")]) == 0
    assert gro_size([(SOL_UDP, UDP_GRO, b"\x01")]) == 0


def test_the_gso_cmsg_carries_the_segment_size_as_a_native_u16() -> None:
    assert gso_cmsg(1400) == [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 1400))]
