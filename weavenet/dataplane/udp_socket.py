"""The sleeve's UDP socket: opened with its options, and every send that goes through it.

Frames and frag tests go without DF (the kernel may fragment them); only PMTU probes switch to
DF for the one send. Datagrams bigger than the path MTU go as FRAGMENT pieces in one GSO send;
GRO gives them (and runs of same-sized datagrams) back in one read. Both are optional: without
GRO pieces arrive one by one, without GSO (the first EINVAL/EIO) big datagrams go whole and the
kernel fragments them. Nothing here blocks: a send the kernel refuses is a counted drop.

Counters: ``tx_datagrams``, ``tx_bytes``, ``control_tx``, ``control_send_errors``, and the drop
``send_failed``. The receive loop stays in the forwarder (``sock.recvmsg`` with
``udp.GRO_CMSG_SPACE``), where it is one piece with the decoding.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any

from weavenet.dataplane import sleeve, udp
from weavenet.dataplane.path import UNDERLAY_MTU, Addr
from weavenet.dataplane.sealed import SEALED_PREFIX_LEN
from weavenet.runtime.counters import Counters

SOCKET_BUFFER = 4 * 1024 * 1024
SEND_FAILED = "send_failed"  # drop reason: EAGAIN (a full socket buffer), no route, ...


def route_mtu(addr: Addr) -> int:
    """The MTU of our route to ``addr`` (what the kernel would use), 1500 if unknown."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return int(s.getsockopt(socket.IPPROTO_IP, udp.IP_MTU))
    except OSError:
        return UNDERLAY_MTU


def open_udp(port: int) -> socket.socket:
    """The non-blocking UDP socket on ``0.0.0.0:port``: big buffers (forced past the sysctl
    limits where we may), no DF, GRO where the kernel has it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt, force in ((socket.SO_RCVBUF, udp.SO_RCVBUFFORCE),
                       (socket.SO_SNDBUF, udp.SO_SNDBUFFORCE)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:  # not privileged: up to the sysctl limit
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_DONT)
    sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(udp.SOL_UDP, udp.UDP_GRO, 1)
    return sock


class UdpSocket:
    """The socket with its send state: whether GSO works, the last FRAGMENT id."""

    def __init__(self, port: int, *, sender: int, frag_id: int, counters: Counters,
                 log: Any) -> None:
        self.sock = open_udp(port)
        self.sender = sender  # our wire peer id, in every header we build
        self.frag_id = frag_id  # random start: a restarted forwarder does not reuse ids soon
        self.counters = counters
        self.log = log
        self.gso = True
        # control datagrams' seq, checked by the neighbours' replay windows: from the clock,
        # which never goes back within a boot, so a restarted forwarder is still fresh
        self.control_seq = time.monotonic_ns()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send_control(self, kind: int, addr: Addr, token: int, key: bytes, *, value: int = 0,
                     size: int = 0, df: bool = False) -> None:
        """Send a control message tagged with ``key`` (our control key of the connection to
        the neighbour at ``addr``); with ``df`` (a PMTU probe) EMSGSIZE is raised to the
        caller, any other failure is counted."""
        self.control_seq += 1
        msg = sleeve.build_control(kind, sender=self.sender, token=token, key=key, value=value,
                                   size=size, seq=self.control_seq)
        sock = self.sock
        try:
            if df:
                sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_PROBE)
            try:
                sock.sendto(msg, addr)
            finally:
                if df:
                    sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_DONT)
        except OSError as exc:
            if df and exc.errno == errno.EMSGSIZE:
                raise
            self.counters.add("control_send_errors")
            return
        self.counters.add("control_tx")

    def send_datagrams(self, datagrams: Sequence[Any], addr: Addr, piece: int) -> None:
        """Send sleeve datagrams to one next hop, those over ``piece`` bytes as pieces. The
        first refused send drops it and the rest: the socket buffer is full (we never block),
        or there is no route."""
        sendto = self.sock.sendto
        nbytes = 0
        for i, d in enumerate(datagrams):
            try:
                if len(d) > piece and self.gso:
                    self.send_pieces(d, piece, addr)
                else:
                    sendto(d, addr)
            except OSError:
                self.counters.drop(SEND_FAILED, len(datagrams) - i)
                break
            nbytes += len(d)
        self.counters.add("tx_datagrams", len(datagrams))
        self.counters.add("tx_bytes", nbytes)

    def send_sealed(self, prefix: bytes, blobs: Iterable[Any], addr: Addr, piece: int) -> None:
        """Send the crypto actor's sealed blobs behind our clear ``prefix``; an empty blob
        failed to seal and is skipped, a refused send is a drop."""
        sendmsg = self.sock.sendmsg
        n = nbytes = 0
        for blob in blobs:
            if not blob:
                continue
            try:
                if len(blob) + SEALED_PREFIX_LEN > piece and self.gso:
                    nbytes += self.send_pieces(b"".join((prefix, blob)), piece, addr)
                else:
                    # gather the clear prefix and the sealed blob without copying them together
                    nbytes += sendmsg((prefix, blob), (), 0, addr)
            except OSError:
                self.counters.drop(SEND_FAILED)
                continue
            n += 1
        self.counters.add("tx_datagrams", n)
        self.counters.add("tx_bytes", nbytes)

    def send_pieces(self, datagram: Any, piece: int, addr: Addr) -> int:
        """Send a datagram bigger than the path MTU as FRAGMENT pieces, one GSO send per group
        of up to 64; where the kernel refuses GSO, send it whole from now on (the kernel then
        fragments it, which the frag test showed the path carries)."""
        self.frag_id = frag_id = (self.frag_id + 1) & 0xFFFFFFFFFFFFFFFF
        cmsg = udp.gso_cmsg(piece)
        sendmsg = self.sock.sendmsg
        try:
            for parts in sleeve.split_datagram(datagram, piece, sender=self.sender,
                                               frag_id=frag_id):
                sendmsg(parts, cmsg, 0, addr)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT):
                raise
            self.gso = False
            self.log.warning("udp_gso_unavailable", reason=str(exc))
            self.sock.sendto(datagram, addr)
        return len(datagram)
