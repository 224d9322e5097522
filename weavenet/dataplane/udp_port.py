"""The router's UDP port: one socket, opened with its options by the supervisor and shared.

One socket on ``0.0.0.0:port`` (6783) per router, opened by the supervisor (:func:`open_udp`)
and handed to the forwarder and the crypto actor as an inherited descriptor named by the
environment variable :data:`UDP_FD_ENV` (:func:`inherited_udp`). The forwarder reads it and
sends clear datagrams and control messages; the crypto actor only sends the datagrams it
sealed. Both send from port 6783, so a NAT in front of us keeps one mapping for the peer. Why
one inherited socket rather than one per process: a socket of its own would have to join the
port with ``SO_REUSEPORT`` and the kernel would spread arriving datagrams over the two, and
handing the forwarder's descriptor to crypto (SCM_RIGHTS) would lose it with the forwarder;
the supervisor's copy outlives a forwarder killed with -9, with the datagrams queued on it.

What two processes may not do on a shared socket is toggle an option per send: the option is
the socket's, so the other process's sends would get it too. Frames and frag tests go without
DF (the kernel may fragment them), a PMTU probe needs DF: probes leave from a second,
send-only socket on the same port (:func:`open_probe`), in the port's ``SO_REUSEPORT`` group,
whose BPF program gives every arriving datagram to the shared socket (see
:mod:`weavenet.dataplane.udp`). Where the kernel refuses that, the forwarder falls back to
switching DF on the shared socket for the probe's one send (the crypto actor's sends during
that instant carry DF too; they are no bigger than the path MTU unless GSO is missing).
:func:`open_udp` first binds the port plainly, so a port already taken is refused as before
rather than joined.

The sends themselves are :mod:`weavenet.dataplane.udp_socket`'s.
"""

from __future__ import annotations

import contextlib
import os
import socket

from weavenet.dataplane import udp

SOCKET_BUFFER = 4 * 1024 * 1024
UDP_FD_ENV = "WEAVE_UDP_FD"  # the descriptor of the router's UDP socket, inherited


def open_udp(port: int) -> socket.socket:
    """The non-blocking UDP socket on ``0.0.0.0:port``, with its options (:func:`configure`),
    first in the port's ``SO_REUSEPORT`` group with every datagram steered to it; without the
    steering (an old kernel) a plain socket, and probes toggle DF instead."""
    if port:
        # taken by anyone (another router?): fail here as a plain bind would, not join it
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as check:
            check.bind(("0.0.0.0", port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("0.0.0.0", port))
        sock.setsockopt(socket.SOL_SOCKET, udp.SO_ATTACH_REUSEPORT_CBPF, udp.STEER_TO_FIRST)
    except OSError:
        sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
    configure(sock)
    return sock


def configure(sock: socket.socket) -> None:
    """Big buffers (forced past the sysctl limits where we may), no DF, GRO where the kernel
    has it, non-blocking. Idempotent: a restarted forwarder sets them again."""
    for opt, force in ((socket.SO_RCVBUF, udp.SO_RCVBUFFORCE),
                       (socket.SO_SNDBUF, udp.SO_SNDBUFFORCE)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUFFER)
        except OSError:  # not privileged: up to the sysctl limit
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    sock.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_DONT)
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        sock.setsockopt(udp.SOL_UDP, udp.UDP_GRO, 1)


def inherited_udp(port: int) -> socket.socket | None:
    """The router's UDP socket handed down by the supervisor (:data:`UDP_FD_ENV`), if any;
    a descriptor that is not a UDP socket on ``port`` is an error (ValueError)."""
    fd = os.environ.get(UDP_FD_ENV)
    if not fd:
        return None
    sock = socket.socket(fileno=int(fd))
    if sock.type != socket.SOCK_DGRAM or sock.getsockname()[1] != port:
        sock.detach()
        raise ValueError(f"{UDP_FD_ENV}={fd} is not a UDP socket on port {port}")
    return sock


def open_probe(sock: socket.socket) -> socket.socket | None:
    """A send-only socket on ``sock``'s port that sets DF and ignores the learned PMTU (what
    a PMTU probe needs), or None where it cannot join the port (see :func:`open_udp`)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.setsockopt(socket.IPPROTO_IP, udp.IP_MTU_DISCOVER, udp.IP_PMTUDISC_PROBE)
        probe.bind(("0.0.0.0", sock.getsockname()[1]))
        probe.setblocking(False)
    except OSError:
        probe.close()
        return None
    return probe
