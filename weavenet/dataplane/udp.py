"""The Linux UDP socket options the sleeve uses, and their control messages (no I/O here).

UDP GSO (``UDP_SEGMENT``): one ``sendmsg`` of a buffer that the kernel cuts into datagrams of
a given size, which is how FRAGMENT pieces leave. UDP GRO (``UDP_GRO``): one read returns
several same-sized datagrams of one flow, with their size in a control message. Path MTU
discovery needs "set DF, do not learn" for a probe while frames go with "never set DF"; as
Linux has no per-send DF for IPv4, probes leave from a second socket on the same port, in the
port's ``SO_REUSEPORT`` group, and a classic BPF program on the group (:data:`STEER_TO_FIRST`)
hands every arriving datagram to the group's first socket, the one that reads.
The socket module does not export all of these, hence the numbers.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import sys
from collections.abc import Iterable
from typing import Any

# <linux/in.h>
IP_MTU_DISCOVER = 10
IP_MTU = 14
IP_PMTUDISC_DONT = 0
IP_PMTUDISC_PROBE = 3
# <linux/socket.h>: set buffer sizes above the sysctl limits (needs CAP_NET_ADMIN)
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_ATTACH_REUSEPORT_CBPF = 51
# <linux/udp.h>
SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)  # ancillary buffer for recvmsg with UDP_GRO on

_U16 = struct.Struct("=H")


class _SockFilter(ctypes.Structure):  # struct sock_filter, <linux/filter.h>
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):  # struct sock_fprog
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


_BPF_RET_K = 0x06  # BPF_RET | BPF_K: return the constant k
# kept alive for the process's life: STEER_TO_FIRST holds a pointer to it
_RET_0 = (_SockFilter * 1)(_SockFilter(_BPF_RET_K, 0, 0, 0))
# SO_ATTACH_REUSEPORT_CBPF's value: "return 0", i.e. every datagram to the reuseport group's
# socket 0, the first bound (the kernel copies the program during setsockopt)
STEER_TO_FIRST = bytes(_SockFprog(1, _RET_0))


def gro_size(ancillary: Iterable[tuple[int, int, Any]]) -> int:
    """The segment size of a GRO-coalesced read (0 when the read is one datagram)."""
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) in (2, 4):
            return int.from_bytes(value, sys.byteorder)  # an int (a u16 on old kernels)
    return 0


def gso_cmsg(segment: int) -> list[tuple[int, int, bytes]]:
    """The ``sendmsg`` ancillary data that has the kernel cut the buffer into ``segment``-byte
    datagrams."""
    return [(SOL_UDP, UDP_SEGMENT, _U16.pack(segment))]
