"""Gratuitous ARP: a container announces its MAC for its address as soon as it is attached.

Without it, peers that cached the address under an old MAC (a container moved to another host
with the same IP, as the seed promises works) keep sending to the old MAC until their ARP entry
goes stale, which takes tens of seconds. The original weave script ran `arping -U` for this.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from weavenet.host.netns import open_netns_fd, socket_in_netns

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def announcement(mac: bytes, ip: str) -> bytes:
    """An ARP request whose sender and target address are both `ip` (RFC 5227 announcement)."""
    addr = ipaddress.IPv4Address(ip).packed
    eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, addr, b"\x00" * 6, addr)
    return eth + arp


def announce(netns_path: str, ifname: str, cidr: str, count: int = 2) -> None:
    """Send `count` announcements for cidr's address from `ifname` inside the namespace."""
    ip = str(ipaddress.ip_interface(cidr).ip)
    fd, _ = open_netns_fd(netns_path)
    try:
        sock = socket_in_netns(fd, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    finally:
        os.close(fd)
    with sock:
        sock.bind((ifname, 0))
        frame = announcement(sock.getsockname()[4], ip)
        for _ in range(count):
            sock.send(frame)
