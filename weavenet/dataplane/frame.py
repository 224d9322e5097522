"""Ethernet frames as the data plane sees them: a virtio-net header, then an Ethernet frame.

The capture TAP is opened with IFF_VNET_HDR, so every frame read from it starts with the
10-byte ``struct virtio_net_hdr``; the same header travels with the frame through the sleeve
and is written back on the far side so the kernel there can finish checksums and segment
super-frames. Functions here take the *offset* of the Ethernet header inside the buffer
(``VNET_HDR_LEN`` for data-plane frames, 0 for a bare Ethernet frame) so no slice is needed.

Everything is plain functions over ``bytes``/``memoryview`` with precompiled ``Struct``s:
they run once or more per frame on the hot path.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from weavenet.runtime.codec import Buffer  # noqa: F401  (re-exported: the data plane's buffer type)

ETH_HLEN = 14
VLAN_HLEN = 4
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # 802.1Q
ETHERTYPE_QINQ = 0x88A8  # 802.1ad outer tag
_TAG_TYPES = (ETHERTYPE_VLAN, ETHERTYPE_QINQ)

BROADCAST_MAC = b"\xff" * 6

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPV4_HLEN = 20
IPV6_HLEN = 40
IPV4_DF = 0x4000
IPV4_MF = 0x2000
IPV4_OFFMASK = 0x1FFF

# struct virtio_net_hdr (legacy, without num_buffers): the TAP uses the host's byte order,
# which on every platform we run on is little-endian.
VNET_HDR_LEN = 10
VNET_F_NEEDS_CSUM = 1
VNET_F_DATA_VALID = 2
VNET_GSO_NONE = 0
VNET_GSO_TCPV4 = 1
VNET_GSO_UDP = 3
VNET_GSO_TCPV6 = 4
VNET_GSO_UDP_L4 = 5
VNET_GSO_ECN = 0x80

_VNET = struct.Struct("<BBHHHH")
_U16 = struct.Struct("!H")
# version/ihl, tos, total length, id, flags/fragment offset, ttl, protocol, checksum, src, dst
_IPV4 = struct.Struct("!BBHHHBBH4s4s")

ZERO_VNET_HDR = bytes(VNET_HDR_LEN)


class FrameError(ValueError):
    """A frame too short or malformed for the requested access."""


class VnetHdr(NamedTuple):
    flags: int = 0
    gso_type: int = VNET_GSO_NONE
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0


def parse_vnet_hdr(buf: Buffer) -> VnetHdr:
    if len(buf) < VNET_HDR_LEN:
        raise FrameError(f"vnet header needs {VNET_HDR_LEN} bytes, got {len(buf)}")
    return VnetHdr._make(_VNET.unpack_from(buf, 0))


def build_vnet_hdr(hdr: VnetHdr | None = None) -> bytes:
    if hdr is None:
        return ZERO_VNET_HDR
    try:
        return _VNET.pack(*hdr)
    except struct.error as exc:
        raise FrameError(f"vnet header field out of range: {exc}") from None


def gso_type(buf: Buffer) -> int:
    """The GSO type of a data-plane frame without the ECN bit (0 for ordinary frames)."""
    return buf[1] & ~VNET_GSO_ECN


# --- Ethernet -------------------------------------------------------------------------------


def dst_mac(buf: Buffer, off: int = VNET_HDR_LEN) -> bytes:
    return bytes(buf[off : off + 6])


def src_mac(buf: Buffer, off: int = VNET_HDR_LEN) -> bytes:
    return bytes(buf[off + 6 : off + 12])


def is_multicast(mac: Buffer) -> bool:
    """Group address (the I/G bit); broadcast is a multicast address too."""
    return bool(mac[0] & 1)


def is_broadcast(mac: Buffer) -> bool:
    return bytes(mac) == BROADCAST_MAC


def ethertype(buf: Buffer, off: int = VNET_HDR_LEN) -> tuple[int, int]:
    """(EtherType, offset of the L3 header) after skipping 802.1Q / 802.1ad tags."""
    pos = off + 12
    end = len(buf)
    if end < pos + 2:
        raise FrameError(f"frame of {end - off} bytes is shorter than an Ethernet header")
    etype = _U16.unpack_from(buf, pos)[0]
    while etype in _TAG_TYPES:
        pos += VLAN_HLEN
        if end < pos + 2:
            raise FrameError("truncated VLAN tag")
        etype = _U16.unpack_from(buf, pos)[0]
    return etype, pos + 2


def mac_to_str(mac: Buffer) -> str:
    return ":".join(f"{b:02x}" for b in bytes(mac))


def mac_from_str(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


# --- IPv4 -----------------------------------------------------------------------------------


class Ipv4Header(NamedTuple):
    ihl: int  # header length in bytes
    tos: int
    total_length: int
    ident: int
    flags_frag: int
    ttl: int
    protocol: int
    checksum: int
    src: bytes
    dst: bytes

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_frag & IPV4_DF)

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_frag & (IPV4_MF | IPV4_OFFMASK))


def ipv4_header(buf: Buffer, l3: int) -> Ipv4Header:
    """Parse the IPv4 header at offset ``l3`` (from :func:`ethertype`); validates lengths only."""
    if len(buf) < l3 + IPV4_HLEN:
        raise FrameError("truncated IPv4 header")
    vihl, tos, tot, ident, ff, ttl, proto, csum, src, dst = _IPV4.unpack_from(buf, l3)
    if vihl >> 4 != 4:
        raise FrameError(f"IP version {vihl >> 4} in an IPv4 frame")
    ihl = (vihl & 0x0F) * 4
    if ihl < IPV4_HLEN or len(buf) < l3 + ihl:
        raise FrameError(f"bad IPv4 header length {ihl}")
    if tot < ihl:
        raise FrameError(f"IPv4 total length {tot} shorter than its header")
    return Ipv4Header(ihl, tos, tot, ident, ff, ttl, proto, csum, src, dst)


def inet_checksum(data: Buffer, initial: int = 0) -> int:
    """RFC 1071 Internet checksum of ``data`` plus an unfolded partial sum ``initial``.

    Summing 16-bit words with end-around carry is arithmetic modulo 0xFFFF (2**16 is 1 there),
    so one big-integer conversion does the whole sum in C instead of a per-word Python loop.
    """
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    total = int.from_bytes(data, "big") + initial
    folded = total % 0xFFFF
    if folded == 0 and total:
        folded = 0xFFFF  # one's complement has two zeros; a non-zero sum folds to 0xFFFF
    return ~folded & 0xFFFF
