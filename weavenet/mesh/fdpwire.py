"""The fast datapath heartbeat: a full-size frame that crosses the peer's kernel VXLAN device.

Sent from an ordinary UDP socket (DF set: ``IP_PMTUDISC_DO``) to the peer's fastdp port, it is
a VXLAN packet (8-byte header with our VNI) carrying one Ethernet frame of the container MTU:

    dst 01:80:c2:00:00:0e   (a link-local group: the bridge never forwards it to containers)
    src a fixed locally administered MAC
    type 0x88b5             (IEEE local experimental)
    payload: MAGIC, sender peer name (u8 length + bytes), uid u64, seq u64, zero padding

so the outer packet is exactly as large as a full data frame's (container MTU + 50), goes to the
same UDP port and is decapsulated by the same kernel device. The receiver reads it from a packet
socket bound to that device for this ethertype only (data frames never reach that socket) and
acknowledges it over the TCP connection. Why not a plain UDP listener on 6784: the kernel's
VXLAN socket owns that port, and proving the device itself is the point.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from weavenet.runtime.fastdp import HEARTBEAT_ETHERTYPE as ETHERTYPE

VXLAN_FLAGS = 0x08  # "I" flag: the VNI is valid
DST_MAC = bytes.fromhex("0180c200000e")
SRC_MAC = bytes.fromhex("0a5745415645")  # locally administered, unicast
MAGIC = b"wnfd"
ETH_HLEN = 14
VXLAN_HLEN = 8
OUTER_OVERHEAD = 20 + 8 + VXLAN_HLEN + ETH_HLEN  # IPv4 + UDP + VXLAN + inner Ethernet = 50
MAX_NAME = 255
MIN_PAYLOAD = 46  # the smallest Ethernet payload: a small heartbeat's
_TAIL = struct.Struct("!QQ")


class FdpWireError(ValueError):
    pass


@dataclass(frozen=True)
class FdpHeartbeat:
    peer: str
    uid: int
    seq: int


def _payload(hb: FdpHeartbeat) -> bytes:
    name = hb.peer.encode()
    if len(name) > MAX_NAME:
        raise FdpWireError("peer name too long")
    return MAGIC + bytes([len(name)]) + name + _TAIL.pack(hb.uid, hb.seq)


def encode_datagram(hb: FdpHeartbeat, vni: int, mtu: int | None) -> bytes:
    """The UDP payload: VXLAN header + an Ethernet frame whose payload is ``mtu`` bytes
    (None: a small heartbeat, ``MIN_PAYLOAD`` or what the name needs)."""
    body = _payload(hb)
    if mtu is None:
        mtu = max(len(body), MIN_PAYLOAD)
    if len(body) > mtu:
        raise FdpWireError(f"mtu {mtu} too small for a heartbeat")
    vxlan = struct.pack("!B3xI", VXLAN_FLAGS, vni << 8)
    return vxlan + DST_MAC + SRC_MAC + struct.pack("!H", ETHERTYPE) + body.ljust(mtu, b"\0")


def decode_frame(frame: bytes) -> FdpHeartbeat:
    """The heartbeat in an Ethernet frame as the packet socket hands it over."""
    if len(frame) < ETH_HLEN + len(MAGIC) + 1 + _TAIL.size:
        raise FdpWireError("runt heartbeat")
    if frame[12:14] != struct.pack("!H", ETHERTYPE) or frame[14:18] != MAGIC:
        raise FdpWireError("not a fastdp heartbeat")
    n = frame[18]
    end = 19 + n
    if len(frame) < end + _TAIL.size:
        raise FdpWireError("truncated heartbeat")
    try:
        name = frame[19:end].decode()
    except UnicodeDecodeError:
        raise FdpWireError("peer name is not UTF-8") from None
    uid, seq = _TAIL.unpack_from(frame, end)
    return FdpHeartbeat(name, uid, seq)
