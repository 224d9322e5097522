"""Builders for test frames and an independent (slow, obvious) Internet checksum."""

from __future__ import annotations

import struct

VNET_ZERO = bytes(10)


def mac(n: int, *, group: bool = False) -> bytes:
    """A locally administered unicast MAC (or a multicast one) numbered ``n``."""
    first = 0x03 if group else 0x02
    return bytes([first, 0, 0, 0, (n >> 8) & 0xFF, n & 0xFF])


def slow_checksum(data: bytes) -> int:
    """RFC 1071, word by word with end-around carry: deliberately not the code under test."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        while total > 0xFFFF:
            total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    *,
    df: bool = True,
    ident: int = 0x1234,
    ttl: int = 64,
) -> bytes:
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(payload),
            ident,
            0x4000 if df else 0,
            ttl,
            proto,
            0,
            src,
            dst,
        )
    )
    hdr[10:12] = struct.pack("!H", slow_checksum(bytes(hdr)))
    return bytes(hdr) + payload


def eth(dst: bytes, src: bytes, etype: int, payload: bytes, *, vnet: bytes = VNET_ZERO) -> bytes:
    return vnet + dst + src + struct.pack("!H", etype) + payload


def vnet(
    flags: int = 0,
    gso_type: int = 0,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
