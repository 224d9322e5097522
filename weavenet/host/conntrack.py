"""Forgetting conntrack's flows of one UDP port, through pyroute2's netfilter socket.

After a quick relaunch a stale entry (a NAT binding, a firewall verdict) would keep steering
sleeve datagrams the old way; `conntrack -D -p udp --dport P` and `--sport P` did this before.
"""

from __future__ import annotations

import errno
import socket

from pyroute2 import Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple


def clear_udp_port(port: int) -> int:
    """Delete every UDP flow whose original direction has ``port`` as source or destination port;
    how many were deleted. Raises NetlinkError or OSError when netfilter cannot be asked."""
    deleted = 0
    with Conntrack() as ct:
        # Old kernels ignore the dump filter, so the ports are checked here too.
        udp = NFCTAttrTuple(proto=socket.IPPROTO_UDP)
        stale = [e for e in ct.dump_entries(tuple_orig=udp)
                 if port in (e.tuple_orig.dport, e.tuple_orig.sport)]
        for entry in stale:
            try:
                ct.delete(entry)
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:  # it expired meanwhile
                    raise
                continue
            deleted += 1
    return deleted
