"""Making oversized frames fit a path: ICMP "fragmentation needed", TCP segmentation of GSO
super-frames, IPv4 fragmentation.

All functions take a data-plane frame (virtio-net header at 0, Ethernet at ``off``) and return
new data-plane frames with a zeroed virtio-net header: every checksum in them is complete, so
the receiving kernel has nothing left to do. ``mtu`` is always the largest IP packet allowed.
These run only on the slow path (a frame bigger than the path takes), so they favour clarity;
checksums still avoid per-word Python loops (see :func:`weavenet.dataplane.frame.inet_checksum`).
"""

from __future__ import annotations

import struct

from weavenet.dataplane.frame import (
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPV4_HLEN,
    IPV4_MF,
    IPV4_OFFMASK,
    IPV6_HLEN,
    VNET_GSO_TCPV4,
    VNET_GSO_TCPV6,
    VNET_HDR_LEN,
    Buffer,
    FrameError,
    ethertype,
    gso_type,
    inet_checksum,
    ipv4_header,
    parse_vnet_hdr,
)

ICMP_DEST_UNREACH = 3
ICMP_FRAG_NEEDED = 4
ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
# RFC 1812 4.3.2.3: quote as much of the original as fits in a 576-byte ICMP datagram
ICMP_QUOTE_MAX = 576 - IPV4_HLEN - 8
MIN_IPV4_MTU = 68

TCP_FIN = 0x01
TCP_PSH = 0x08
TCP_CWR = 0x80

_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_ICMP_FRAG = struct.Struct("!BBHHH")  # type, code, checksum, unused, next-hop MTU
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


def icmp_frag_needed(frame: Buffer, mtu: int, off: int = VNET_HDR_LEN) -> bytes | None:
    """An ICMP type 3 code 4 reply (next-hop MTU ``mtu``) to inject back towards the sender.

    None when no reply is due: not IPv4, DF clear, a non-first fragment, or itself an ICMP
    error (never answer an error with an error). The reply comes from the original
    destination's MAC and IP so the sender's stack and reverse-path filters accept it.
    """
    etype, l3 = ethertype(frame, off)
    if etype != ETHERTYPE_IPV4:
        return None
    ip = ipv4_header(frame, l3)
    if not ip.dont_fragment or ip.flags_frag & IPV4_OFFMASK:
        return None
    l4 = l3 + ip.ihl
    if ip.protocol == IPPROTO_ICMP and len(frame) > l4 and frame[l4] in ICMP_ERROR_TYPES:
        return None
    quote_end = min(len(frame), l3 + ip.total_length, l3 + ICMP_QUOTE_MAX)
    quote = bytes(frame[l3:quote_end])
    mtu = max(MIN_IPV4_MTU, min(mtu, 0xFFFF))
    icmp = _ICMP_FRAG.pack(ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, 0, 0, mtu) + quote
    icmp = icmp[:2] + _U16.pack(inet_checksum(icmp)) + icmp[4:]
    ip_hdr = _ipv4_hdr(0, IPV4_HLEN + len(icmp), 0, 0, 64, IPPROTO_ICMP, ip.dst, ip.src)
    eth = bytes(frame[off + 6 : off + 12]) + bytes(frame[off : off + 6]) + frame[off + 12 : l3]
    return b"".join((bytes(off), eth, ip_hdr, icmp))


def _ipv4_hdr(
    tos: int, total: int, ident: int, flags_frag: int, ttl: int, proto: int, src: bytes, dst: bytes
) -> bytes:
    hdr = _IPV4.pack(0x45, tos, total, ident, flags_frag, ttl, proto, 0, src, dst)
    return hdr[:10] + _U16.pack(inet_checksum(hdr)) + hdr[12:]


def _with_ipv4_fields(hdr: bytes, total: int, ident: int, flags_frag: int) -> bytes:
    """Copy of an IPv4 header (options kept) with new length/id/fragment fields and checksum."""
    out = bytearray(hdr)
    struct.pack_into("!HHH", out, 2, total, ident, flags_frag)
    out[10:12] = b"\x00\x00"
    out[10:12] = _U16.pack(inet_checksum(out))
    return bytes(out)


def segment_tcp(frame: Buffer, mtu: int, off: int = VNET_HDR_LEN) -> list[bytes]:
    """Split a TCP GSO super-frame into frames whose IP packets are at most ``mtu`` bytes.

    Segments carry at most the super-frame's gso_size bytes of payload (less if the MTU
    demands), consecutive sequence numbers, IPv4 ids counting up, FIN/PSH only on the last
    and CWR only on the first, and complete IP and TCP checksums.
    """
    if off != VNET_HDR_LEN:
        raise FrameError("segmentation needs the virtio-net header")
    gso = gso_type(frame)
    if gso not in (VNET_GSO_TCPV4, VNET_GSO_TCPV6):
        raise FrameError(f"not a TCP GSO frame (gso_type {gso})")
    mss = parse_vnet_hdr(frame).gso_size
    etype, l3 = ethertype(frame, off)
    if etype == ETHERTYPE_IPV4:
        ip = ipv4_header(frame, l3)
        if ip.protocol != IPPROTO_TCP:
            raise FrameError("GSO TCPv4 frame without TCP")
        iphl = ip.ihl
        end = min(len(frame), l3 + ip.total_length)
        pseudo_addrs = ip.src + ip.dst
    elif etype == ETHERTYPE_IPV6:
        if len(frame) < l3 + IPV6_HLEN or frame[l3 + 6] != IPPROTO_TCP:
            raise FrameError("GSO TCPv6 frame without a plain TCP header")
        iphl = IPV6_HLEN
        end = min(len(frame), l3 + IPV6_HLEN + _U16.unpack_from(frame, l3 + 4)[0])
        pseudo_addrs = bytes(frame[l3 + 8 : l3 + 40])
    else:
        raise FrameError(f"GSO frame with EtherType {etype:#06x}")
    l4 = l3 + iphl
    if len(frame) < l4 + 20:
        raise FrameError("truncated TCP header")
    thl = (frame[l4 + 12] >> 4) * 4
    if thl < 20 or l4 + thl > end:
        raise FrameError(f"bad TCP header length {thl}")
    step = min(mss or 0xFFFF, mtu - iphl - thl)
    if step <= 0:
        raise FrameError(f"MTU {mtu} leaves no room for TCP payload")

    l2 = bytes(off) + bytes(frame[off:l3])
    ip_hdr = bytes(frame[l3:l4])
    tcp_hdr = bytes(frame[l4 : l4 + thl])
    seq0 = _U32.unpack_from(tcp_hdr, 4)[0]
    flags = tcp_hdr[13]
    payload = memoryview(frame)[l4 + thl : end]
    # the pseudo-header's address part is the same for every segment; sum it once
    addr_sum = int.from_bytes(pseudo_addrs, "big")
    ident = _U16.unpack_from(ip_hdr, 4)[0]
    segments: list[bytes] = []
    starts = range(0, max(len(payload), 1), step)
    for i, start in enumerate(starts):
        chunk = payload[start : start + step]
        last = i == len(starts) - 1
        seg_flags = flags
        if not last:
            seg_flags &= ~(TCP_FIN | TCP_PSH)
        if i:
            seg_flags &= ~TCP_CWR
        tcp = bytearray(tcp_hdr)
        _U32.pack_into(tcp, 4, (seq0 + start) & 0xFFFFFFFF)
        tcp[13] = seg_flags
        tcp[16:18] = b"\x00\x00"
        tcp_len = thl + len(chunk)
        # proto and length sit in the low words of the pseudo-header for v4 and v6 alike
        pseudo = addr_sum + IPPROTO_TCP + tcp_len
        tcp[16:18] = _U16.pack(inet_checksum(bytes(tcp) + bytes(chunk), pseudo))
        if etype == ETHERTYPE_IPV4:
            ff = _U16.unpack_from(ip_hdr, 6)[0]
            hdr = _with_ipv4_fields(ip_hdr, iphl + tcp_len, (ident + i) & 0xFFFF, ff)
        else:
            hdr = ip_hdr[:4] + _U16.pack(tcp_len) + ip_hdr[6:]
        segments.append(b"".join((l2, hdr, tcp, chunk)))
    return segments


def fragment_ipv4(frame: Buffer, mtu: int, off: int = VNET_HDR_LEN) -> list[bytes]:
    """IPv4 fragments (DF clear) of at most ``mtu`` bytes each, as RFC 791 describes."""
    etype, l3 = ethertype(frame, off)
    if etype != ETHERTYPE_IPV4:
        raise FrameError("only IPv4 frames can be fragmented")
    ip = ipv4_header(frame, l3)
    if ip.dont_fragment:
        raise FrameError("DF is set: answer with ICMP instead")
    per = (mtu - ip.ihl) & ~7
    if per <= 0:
        raise FrameError(f"MTU {mtu} leaves no room for fragment data")
    end = min(len(frame), l3 + ip.total_length)
    l2 = bytes(off) + bytes(frame[off:l3])
    hdr = bytes(frame[l3 : l3 + ip.ihl])
    data = memoryview(frame)[l3 + ip.ihl : end]
    base = ip.flags_frag & IPV4_OFFMASK  # fragmenting a fragment keeps its place
    more = ip.flags_frag & IPV4_MF
    frags: list[bytes] = []
    for start in range(0, len(data), per):
        chunk = data[start : start + per]
        last = start + per >= len(data)
        ff = (base + start // 8) | (more if last else IPV4_MF)
        new_hdr = _with_ipv4_fields(hdr, ip.ihl + len(chunk), ip.ident, ff)
        frags.append(b"".join((l2, new_hdr, chunk)))
    return frags
