"""The router port seen from userspace: a TAP device carrying virtio-net headers.

The bridge's router port is a multi-queue TAP (created persistent by `weavenet.host.bridge`);
each open is a queue of its own, with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE and
TSO/checksum offloads on, so the kernel hands us whole TCP super-frames (up to 64 KiB) with a
virtio-net header (weavenet.dataplane.frame's VnetHdr) that says how to finish them (partial
checksum, segmentation) instead of segmenting them for us. Writing a frame back with its
header lets the far side's kernel do that work. Every item read or written is
`virtio-net header bytes + Ethernet frame`.

Two queues: the capture actor's, attached, reads every frame the bridge sends to the TAP (the
kernel steers those only to attached queues); the forwarder's is detached right after it is
opened (TUNSETQUEUE with IFF_DETACH_QUEUE) and only written: a write through a detached queue
still enters the bridge, whether or not capture's queue is there (tests/functional/test_tap.py
checks both on the running kernel, and that replies to what the forwarder wrote, which the
kernel's per-flow queue steering might send back to the writing queue, still reach capture).

The header is 10 bytes: `struct virtio_net_hdr`. The 12-byte variant appends `num_buffers`,
which only means something for virtio's mergeable receive buffers; a TAP reader has no use
for it, and 10 + 14 (Ethernet) also keeps the IP header 4-byte aligned in the buffer.
Fields are little-endian: that is the host order on the platforms we run on (x86-64,
aarch64), and on a big-endian host we ask the kernel for little-endian headers
(TUNSETVNETLE), so the bytes mean the same on every peer.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import sys
from dataclasses import dataclass

from weavenet.dataplane.frame import VNET_HDR_LEN

TUN_DEVICE = "/dev/net/tun"
IFNAMSIZ = 16

# The router's port on the bridge. Here, not in hostnet, so that the capture actor does not
# import pyroute2 (about 10 MB of resident memory) just for a name.
ROUTER_PORT = "weave-tap"

# ifr_flags for TUNSETIFF (linux/if_tun.h)
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000
IFF_MULTI_QUEUE = 0x0100
# TUNSETQUEUE flags: take one queue of a multi-queue device out of (or back into) the set the
# kernel steers outgoing frames to
IFF_ATTACH_QUEUE = 0x0200
IFF_DETACH_QUEUE = 0x0400

# TUNSETOFFLOAD flags: what the kernel may hand us unfinished
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20  # Linux >= 6.2
TUN_F_USO6 = 0x40

# No USO: a UDP super-frame cannot be cut to a small path MTU in userspace (segment.py splits
# TCP only), so the kernel segments UDP before it reaches us.
WANTED_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
# Tried in order when the kernel refuses a set (EINVAL): some kernels lack ECN.
_OFFLOAD_FALLBACKS = (
    WANTED_OFFLOADS,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
    TUN_F_CSUM,
    0,
)


def _iow(type_char: str, nr: int, size: int) -> int:
    # asm-generic _IOW encoding (x86, arm, arm64, riscv, s390); ppc/mips/sparc differ.
    return (1 << 30) | (size << 16) | (ord(type_char) << 8) | nr


TUNSETIFF = _iow("T", 202, 4)
TUNSETPERSIST = _iow("T", 203, 4)
TUNSETOFFLOAD = _iow("T", 208, 4)
TUNSETVNETHDRSZ = _iow("T", 216, 4)
TUNSETQUEUE = _iow("T", 217, 4)
TUNSETVNETLE = _iow("T", 220, 4)

# struct virtio_net_hdr
# The virtio-net header itself (layout, flags, parsing) is weavenet.dataplane.frame's.
MAX_ITEM = VNET_HDR_LEN + 14 + 2 * 4 + 0xFFFF


class TapError(OSError):
    """Opening or configuring the TAP device failed."""


@dataclass(frozen=True, slots=True)
class TapHandle:
    fd: int
    ifname: str
    vnet_hdr: bool
    offloads: int  # TUN_F_* flags the kernel accepted
    detached: bool = False  # a write-only queue: the kernel steers no frame to it


def _ifreq(name: str, flags: int) -> bytes:
    raw = name.encode("ascii")
    if not raw or len(raw) >= IFNAMSIZ:
        raise TapError(errno.EINVAL, f"bad interface name {name!r}")
    # struct ifreq is 40 bytes on 64-bit: the name, then the ifr_flags short, then padding
    return struct.pack(f"{IFNAMSIZ}sH22x", raw, flags)


def set_offloads(fd: int, wanted: int = WANTED_OFFLOADS) -> int:
    """Ask for `wanted` offloads, dropping what this kernel refuses; return what was set."""
    for flags in (wanted, *[f & wanted for f in _OFFLOAD_FALLBACKS]):
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            continue
        return flags
    return 0  # unreachable in practice: 0 is always accepted


def open_tap_handle(name: str, vnet_hdr: bool = True, detached: bool = False) -> TapHandle:
    """Attach one queue of (or create, non-persistently) the multi-queue TAP `name`.

    Every open is a queue of its own. The kernel steers each frame the bridge sends out of
    the TAP to one of the *attached* queues; a queue opened with ``detached`` is taken out of
    that set at once (TUNSETQUEUE with IFF_DETACH_QUEUE), so nothing is ever read from it, but
    writes through it still enter the bridge: that is the forwarder's, capture keeps the only
    attached one. Fails with EINVAL if `name` is a single-queue TAP (one made by an older
    router: `weavenet.host.bridge.ensure_router_port` replaces it).
    """
    flags = IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | (IFF_VNET_HDR if vnet_hdr else 0)
    ifr = _ifreq(name, flags)
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            fcntl.ioctl(fd, TUNSETIFF, ifr)
        except OSError as exc:
            raise TapError(exc.errno, f"cannot attach TAP {name}: {exc.strerror}") from exc
        offloads = 0
        if vnet_hdr:
            if sys.byteorder == "big":
                fcntl.ioctl(fd, TUNSETVNETLE, struct.pack("i", 1))
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            offloads = set_offloads(fd)
        else:
            # Without headers we cannot be told about partial checksums or GSO, so the kernel
            # must finish every frame before handing it over.
            fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        if detached:
            fcntl.ioctl(fd, TUNSETQUEUE, _ifreq(name, IFF_DETACH_QUEUE))
            # Frames steered here in the moment the queue was attached would wait forever.
            read_batch(fd, max_frames=1 << 16)
    except BaseException:
        os.close(fd)
        raise
    return TapHandle(fd=fd, ifname=name, vnet_hdr=vnet_hdr, offloads=offloads,
                     detached=detached)


def open_existing(name: str, detached: bool = False) -> TapHandle:
    """Attach a queue of the TAP `name` netconf made; TapError when there is none (yet).

    Never creates one: a TAP made here would not be on the bridge. There is no TUNSETIFF flag
    for "attach only", so the name is looked up first (SIOCGIFINDEX on a socket of our
    namespace; sysfs may show another namespace).
    """
    try:
        socket.if_nametoindex(name)
    except OSError as exc:
        raise TapError(errno.ENODEV, f"TAP {name} not found") from exc
    return open_tap_handle(name, detached=detached)


def open_tap(name: str, vnet_hdr: bool = True) -> int:
    """A non-blocking fd on TAP `name` with virtio-net headers and TSO/checksum offloads on."""
    return open_tap_handle(name, vnet_hdr).fd


def create_persistent_tap(name: str) -> None:
    """Create the multi-queue TAP `name` so it outlives the fd that made it (TUNSETPERSIST).

    IFF_VNET_HDR and IFF_NO_PI are per-open flags, not properties of the device: a later
    open may ask for them whatever was used here; IFF_MULTI_QUEUE is the device's, and every
    open must ask for it. Fails with EINVAL if `name` exists but is not a multi-queue TAP.
    """
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE))
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError as exc:
        raise TapError(exc.errno, f"cannot create TAP {name}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def read_batch(fd: int, max_frames: int = 64, bufsize: int = MAX_ITEM,
               max_bytes: int = 1 << 62) -> list[bytes]:
    """Read up to `max_frames` items (vnet header + frame), and no more once `max_bytes` are
    in, without blocking."""
    items: list[bytes] = []
    size = 0
    while len(items) < max_frames and size < max_bytes:
        try:
            item = os.read(fd, bufsize)
        except BlockingIOError:
            break
        items.append(item)
        size += len(item)
    return items


# Refusals that concern one frame, not the port: a full queue (EAGAIN/ENOBUFS), a header
# the kernel rejects (EINVAL: malformed input from a peer must not kill capture), a port
# that is down (EIO). The caller counts a drop.
_DROP_ERRNOS = frozenset({errno.EAGAIN, errno.ENOBUFS, errno.EINVAL, errno.EIO, errno.EMSGSIZE})


def write_frame(fd: int, data: bytes | bytearray | memoryview) -> bool:
    """Write one item (vnet header + frame); False when the kernel refused it."""
    try:
        os.write(fd, data)
    except OSError as exc:
        if exc.errno in _DROP_ERRNOS:
            return False
        raise
    return True
