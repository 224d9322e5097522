"""Every default that more than one module needs: ports, the bridge's name, MTUs, directories.

One place, so the CLI's help text, the supervisor's config and the actors cannot disagree.
"""

from __future__ import annotations

PORT = 6783
"""TCP (peer connections) and UDP (sleeve datagrams)."""

FASTDP_PORT_OFFSET = 1
"""The kernel VXLAN path listens on ``port + 1`` (6784 by default), as upstream Weave's does."""

BRIDGE = "weave"
"""The Linux bridge every container's veth and the router's TAP are ports of."""

CONTAINER_MTU = 1410
"""Container MTU with the sleeve: one full frame plus the sleeve's headers fits a 1500-byte
underlay packet (1500 - IPv4 20 - UDP 8 - sleeve header and frame length)."""

SEAL_OVERHEAD = 16
"""What sealing adds to a frame's share of a datagram (the Poly1305 tag); the container MTU
with a password is ``CONTAINER_MTU - SEAL_OVERHEAD`` so a sealed full frame still fits."""

STATUS_PORT = 6782
STATUS_ADDR = f"127.0.0.1:{STATUS_PORT}"
"""The router's read-only HTTP server (metrics, status, the topology page): loopback only unless
``--status-addr`` says otherwise, as upstream Weave's."""

RUN_DIR = "/run/weave"
"""Control and ipc sockets, the pid file (``WEAVE_RUN_DIR``)."""

STATE_DIR = "/var/lib/weave"
"""Peer name, attachments, ``weave.log`` (``WEAVE_STATE_DIR``)."""


def container_mtu(encrypted: bool) -> int:
    return CONTAINER_MTU - SEAL_OVERHEAD if encrypted else CONTAINER_MTU
