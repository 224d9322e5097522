"""Reaching a container's network namespace by its file path, without moving this process.

A path such as `/proc/<pid>/ns/net` or `/var/run/netns/<name>` names the namespace. We open
it once (the fd keeps the namespace alive for the duration of a call and is what veth
creation passes as IFLA_NET_NS_FD), and we make a netlink socket *inside* it from a
short-lived thread: setns(2) on a network namespace changes only the calling thread, and a
socket stays bound to the namespace it was created in, so the process (and its ZeroMQ
threads) never leaves the host namespace. This replaces pyroute2's `IPRoute(netns=...)`,
which forks a child per socket and, with its default flags, would *create* a namespace at a
path that has vanished.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0


class HostNetError(Exception):
    """A host networking operation could not be carried out; the message says why."""


class NamespaceGone(HostNetError):
    """The namespace path no longer names a live namespace (the container has exited)."""


class NotANetworkNamespace(HostNetError):
    """The path exists but is not a network namespace (or is the caller's own)."""


_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def current_netns_inode() -> int:
    # thread-self, not self: setns is per thread, and callers may run in a setns'd thread.
    return os.stat("/proc/thread-self/ns/net").st_ino


def socket_in_netns(ns_fd: int, family: int, type_: int, proto: int = 0) -> socket.socket:
    """Create a socket inside the namespace open as `ns_fd`, from a throwaway thread."""
    result: dict[str, object] = {}

    def enter_and_create() -> None:
        try:
            _setns(ns_fd)
            result["sock"] = socket.socket(family, type_, proto)
        except OSError as exc:
            result["error"] = exc

    worker = threading.Thread(target=enter_and_create, name="netns-socket", daemon=True)
    worker.start()
    worker.join()
    if "error" in result:
        exc = result["error"]
        assert isinstance(exc, OSError)
        if exc.errno == errno.EINVAL:
            raise NotANetworkNamespace(f"fd {ns_fd} is not a network namespace") from exc
        raise exc
    sock = result["sock"]
    assert isinstance(sock, socket.socket)
    return sock


@dataclass(frozen=True, slots=True)
class Namespace:
    """An open namespace file and an rtnetlink connection inside it."""

    path: str
    fd: int
    inode: int
    ipr: IPRoute


def open_netns_fd(path: str) -> tuple[int, int]:
    """Open a namespace path; return (fd, inode). The caller closes the fd."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise NamespaceGone(f"network namespace {path} is gone") from exc
    except OSError as exc:
        raise HostNetError(f"cannot open network namespace {path}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if st.st_dev != _nsfs_dev():
        os.close(fd)
        # e.g. /var/run/netns/<name> left behind after its bind mount went away
        raise NotANetworkNamespace(f"{path} is not a namespace file")
    if st.st_ino == current_netns_inode():
        os.close(fd)
        raise NotANetworkNamespace(f"{path} is this host's own namespace, not a container's")
    return fd, st.st_ino


@contextmanager
def entered(path: str) -> Iterator[Namespace]:
    """Open `path` and an rtnetlink socket inside it; close both on exit."""
    fd, inode = open_netns_fd(path)
    try:
        try:
            sock = socket_in_netns(fd, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        except NotANetworkNamespace as exc:  # e.g. /proc/<pid>/ns/mnt
            raise NotANetworkNamespace(f"{path} is not a network namespace") from exc
        # IPRoute owns the socket from here and closes it.
        with IPRoute(groups=0, fileno=sock.detach()) as ipr:
            yield Namespace(path=path, fd=fd, inode=inode, ipr=ipr)
    finally:
        os.close(fd)


@contextmanager
def rtnl() -> Iterator[IPRoute]:
    """An rtnetlink connection in the current namespace, subscribed to nothing."""
    with IPRoute(groups=0) as ipr:
        yield ipr
