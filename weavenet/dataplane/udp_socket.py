"""Every send through the sleeve's UDP socket (the socket: :mod:`weavenet.dataplane.udp_port`).

Datagrams bigger than the path MTU go as FRAGMENT pieces in one GSO send; GRO gives them (and
runs of same-sized datagrams) back in one read. Both are optional: without GRO pieces arrive
one by one, without GSO (the first EINVAL/EIO) big datagrams go whole and the kernel fragments
them. Datagrams of a frame or two are gathered from their parts (``sendmsg``). Nothing here
blocks: a send the kernel refuses is a counted drop. A PMTU probe needs DF, which the shared
socket must not switch on for everyone: it leaves from the port's probe socket
(:func:`weavenet.dataplane.udp_port.open_probe`), or, where the kernel refuses that, DF is
switched on the shared socket for its one send.

Counters: ``tx_datagrams``, ``tx_bytes``, ``control_tx``, ``control_send_errors``, and the drop
``send_failed``. The receive loop stays in the forwarder (``sock.recvmsg`` with
``udp.GRO_CMSG_SPACE``), where it is one piece with the decoding.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any

from weavenet.dataplane import sleeve, udp
from weavenet.dataplane.path import UNDERLAY_MTU, Addr
from weavenet.dataplane.sealed import SEALED_PREFIX_LEN
from weavenet.dataplane.udp_port import open_probe, open_udp
from weavenet.runtime.counters import Counters

SEND_FAILED = "send_failed"  # drop reason: EAGAIN (a full socket buffer), no route, ...


def route_mtu(addr: Addr) -> int:
    """The MTU of our route to ``addr`` (what the kernel would use), 1500 if unknown."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            return int(s.getsockopt(socket.IPPROTO_IP, udp.IP_MTU))
    except OSError:
        return UNDERLAY_MTU


class UdpSocket:
    """The socket with its send state: whether GSO works, the last FRAGMENT id, the probe
    socket (opened at the first probe: the crypto actor never sends one)."""

    def __init__(self, port: int, *, sender: int, frag_id: int, counters: Counters,
                 log: Any, sock: socket.socket | None = None) -> None:
        self.sock = open_udp(port) if sock is None else sock
        self.sender = sender  # our wire peer id, in every header we build
        self.frag_id = frag_id  # random start: a restarted sender does not reuse ids soon
        self.counters = counters
        self.log = log
        self.gso = True
        self.probe: socket.socket | None = None
        self.probe_tried = False
        # control datagrams' seq, checked by the neighbours' replay windows: from the clock,
        # which never goes back within a boot, so a restarted forwarder is still fresh
        self.control_seq = time.monotonic_ns()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Close our descriptors (the supervisor's copy of a shared socket stays open)."""
        self.sock.close()
        if self.probe is not None:
            self.probe.close()

    def send_control(self, kind: int, addr: Addr, token: int, key: bytes, *, value: int = 0,
                     size: int = 0, df: bool = False) -> None:
        """Send a control message tagged with ``key`` (our control key of the connection to
        the neighbour at ``addr``); with ``df`` (a PMTU probe) EMSGSIZE is raised to the
        caller, any other failure is counted."""
        self.control_seq += 1
        msg = sleeve.build_control(kind, sender=self.sender, token=token, key=key, value=value,
                                   size=size, seq=self.control_seq)
        try:
            if df:
                self._send_df(msg, addr)
            else:
                self.sock.sendto(msg, addr)
        except OSError as exc:
            if df and exc.errno == errno.EMSGSIZE:
                raise
            self.counters.add("control_send_errors")
            return
        self.counters.add("control_tx")

    def _send_df(self, msg: bytes, addr: Addr) -> None:
        if not self.probe_tried:
            self.probe_tried = True
            self.probe = open_probe(self.sock)
            if self.probe is None:
                self.log.warning("udp_probe_socket_unavailable")
        if self.probe is not None:
            self.probe.sendto(msg, addr)
            return
        sock = self.sock  # the fallback: DF on the shared socket for this one send
        sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_PROBE)
        try:
            sock.sendto(msg, addr)
        finally:
            sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_DONT)

    def send_datagrams(self, datagrams: Sequence[Any], addr: Addr, piece: int) -> None:
        """Send sleeve datagrams (bytes, or lists of the parts to gather) to one next hop,
        those over ``piece`` bytes as pieces. The first refused send drops it and the rest:
        the socket buffer is full (we never block), or there is no route."""
        sock = self.sock
        sendto = sock.sendto
        nbytes = 0
        for i, d in enumerate(datagrams):
            gathered = type(d) is list
            size = sum(map(len, d)) if gathered else len(d)
            try:
                if size > piece and self.gso:
                    self.send_pieces(d if gathered else (d,), piece, addr)
                elif gathered:
                    sock.sendmsg(d, (), 0, addr)
                else:
                    sendto(d, addr)
            except OSError:
                self.counters.drop(SEND_FAILED, len(datagrams) - i)
                break
            nbytes += size
        self.counters.add("tx_datagrams", len(datagrams))
        self.counters.add("tx_bytes", nbytes)

    def send_sealed(self, prefix: bytes, blobs: Iterable[Any], addr: Addr, piece: int) -> None:
        """Send sealed blobs behind our clear ``prefix``; an empty blob failed to seal and is
        skipped, a refused send is a drop."""
        sendmsg = self.sock.sendmsg
        n = nbytes = 0
        for blob in blobs:
            if not blob:
                continue
            try:
                # gather the clear prefix and the sealed blob without copying them together
                if len(blob) + SEALED_PREFIX_LEN > piece and self.gso:
                    nbytes += self.send_pieces((prefix, blob), piece, addr)
                else:
                    nbytes += sendmsg((prefix, blob), (), 0, addr)
            except OSError:
                self.counters.drop(SEND_FAILED)
                continue
            n += 1
        self.counters.add("tx_datagrams", n)
        self.counters.add("tx_bytes", nbytes)

    def send_pieces(self, parts: Sequence[Any], piece: int, addr: Addr) -> int:
        """Send a datagram bigger than the path MTU, gathered from ``parts``, as FRAGMENT
        pieces, one GSO send per group of up to 64; where the kernel refuses GSO, send it whole
        from now on (the kernel then fragments it, which the frag test showed the path
        carries). Returns its length."""
        self.frag_id = frag_id = (self.frag_id + 1) & 0xFFFFFFFFFFFFFFFF
        cmsg = udp.gso_cmsg(piece)
        sendmsg = self.sock.sendmsg
        try:
            for group in sleeve.split_datagram(parts, piece, sender=self.sender,
                                               frag_id=frag_id):
                sendmsg(group, cmsg, 0, addr)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT):
                raise
            self.gso = False
            self.log.warning("udp_gso_unavailable", reason=str(exc))
            if len(parts) == 1:
                self.sock.sendto(parts[0], addr)
            else:
                self.sock.sendmsg(parts, (), 0, addr)
        return sum(map(len, parts))
