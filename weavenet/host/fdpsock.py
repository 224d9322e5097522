"""The two sockets of the fast datapath heartbeat (``weavenet.mesh.fdpwire`` says what crosses).

- the sender: an ordinary UDP socket with ``IP_PMTUDISC_DO``, so a heartbeat larger than the
  path MTU is refused (EMSGSIZE, or dropped on the way with an ICMP error) instead of being
  fragmented: a path that cannot carry full-size frames is never chosen.
- the listener: an AF_PACKET socket bound to the VXLAN device for the heartbeat ethertype
  alone. The kernel hands it only frames of that type, after the device decapsulated them, so
  data frames never wake it; opening it changes nothing in the kernel (netconf owns the device).

Opened by gossip in the host's namespace.
"""

from __future__ import annotations

import socket

from weavenet.runtime.fastdp import HEARTBEAT_ETHERTYPE as ETHERTYPE

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2


def open_sender() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    sock.setblocking(False)
    return sock


def open_listener(device: str) -> socket.socket:
    """Raises OSError when the device does not exist (yet)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    try:
        sock.bind((device, ETHERTYPE))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
