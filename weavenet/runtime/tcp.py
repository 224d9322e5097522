"""Non-blocking TCP for an actor's poll loop: a listener, dials, and one stream per connection.

Nothing here blocks the loop. Host names are resolved on a small thread pool (a dead DNS server
must not stall the actor) and their connect starts once the answer is in. A stream is watched for
POLLOUT only while its connect is in progress or bytes wait that the kernel has not taken: an idle
connection wakes the loop for input alone. What the bytes mean is the caller's business.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import zmq

from weavenet.runtime.address import format_host_port, parse_host_port

T = TypeVar("T")
Opened = Callable[[str, socket.socket, bool], None]  # address, socket, whether already connected
Failed = Callable[[str, str], None]  # address, reason


class StreamError(Exception):
    """The connection failed; the message says how (``connect: ECONNREFUSED``,
    ``receive failed: Connection reset by peer``)."""


def connect_failure(err: int) -> str:
    return f"connect: {errno.errorcode.get(err, err)}"


def can_connect(address: str, timeout: float) -> bool:
    """Whether a TCP connect to ``address`` (``ip:port``) succeeds within ``timeout``; the
    connection is closed at once. Blocking: run it off the loop (a thread pool)."""
    try:
        host, port = parse_host_port(address)
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


class Probes(Generic[T]):
    """``can_connect`` checks run on a small thread pool, each with a context; ``done()``
    returns the finished ones, for the loop to poll (e.g. on a timer)."""

    def __init__(self, timeout: float, workers: int = 2) -> None:
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self._pending: dict[Future[bool], T] = {}

    def probe(self, address: str, context: T) -> None:
        self._pending[self._pool.submit(can_connect, address, self.timeout)] = context

    def done(self) -> list[tuple[T, bool]]:
        finished = [f for f in self._pending if f.done()]
        return [(self._pending.pop(f), f.result()) for f in finished]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def listen(port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking listener on every IPv4 address of ``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def accept(listener: socket.socket, limit: int, log: Any) -> Iterator[tuple[socket.socket, str]]:
    """The connections waiting on ``listener``, each with the remote's "ip:port"; at most
    ``limit`` per wakeup, so a flood of them cannot starve the rest of the loop.

    A failure such as EMFILE is logged and ends the round: the listener stays readable, so the
    next wakeup tries again."""
    for _ in range(limit):
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("accept_failed", reason=str(exc))
            return
        yield sock, format_host_port(addr[0], addr[1])


class Dialer:
    """Starts non-blocking connects to "host:port" addresses; each ends in ``opened`` (with the
    socket, connecting or already connected) or in ``failed`` (with the reason).

    An IP address is dialled at once. A host name is resolved on the pool and dialled from
    ``poll`` (call it from a timer) once its answer is in."""

    def __init__(self, opened: Opened, failed: Failed, workers: int = 2) -> None:
        self._opened = opened
        self._failed = failed
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="resolve")
        self._resolving: dict[str, Future[list[Any]]] = {}

    @property
    def resolving(self) -> list[str]:
        """The addresses whose host name is being resolved, sorted."""
        return sorted(self._resolving)

    def dial(self, address: str) -> None:
        host, port = parse_host_port(address)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            self._resolving[address] = self._pool.submit(
                socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            return
        self._connect(address, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0])

    def cancel(self, address: str) -> None:
        """Forget a dial whose host name is still being resolved (no callback comes for it)."""
        future = self._resolving.pop(address, None)
        if future is not None:
            future.cancel()

    def poll(self) -> None:
        """Dial the host names whose answer came in."""
        for address, future in list(self._resolving.items()):
            if future.done():
                del self._resolving[address]
                self._resolved(address, future)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _resolved(self, address: str, future: Future[list[Any]]) -> None:
        try:
            infos = future.result()
            # Routers listen on IPv4 only: prefer an IPv4 answer ("localhost" may list ::1 first).
            info = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
        except (OSError, IndexError) as exc:
            self._failed(address, f"cannot resolve: {exc}")
            return
        self._connect(address, info)

    def _connect(self, address: str, info: tuple[Any, ...]) -> None:
        family, kind, proto, _, sockaddr = info
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._failed(address, f"cannot open a socket: {exc}")
            return
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._failed(address, connect_failure(err))
            return
        self._opened(address, sock, err == 0)


class Loop(Protocol):
    """What a stream needs of the actor whose loop it is in (``weavenet.runtime.actor.Actor``)."""

    poller: zmq.Poller

    def add_reader(self, sock_or_fd: Any, callback: Callable[[], None]) -> None: ...

    def remove_reader(self, sock_or_fd: Any) -> None: ...


@dataclass(eq=False)
class Stream:
    """A connected (or connecting) TCP socket in an actor's loop, from construction to
    ``close``: ``on_event`` is called when it is readable, writable or in error. POLLOUT is
    watched only while the stream has something to wait for (``want_write``, ``flush``)."""

    sock: socket.socket
    loop: Loop
    on_event: Callable[[], None]
    fd: int = field(init=False)
    writing: bool = field(default=False, init=False)  # POLLOUT registered
    closed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.sock.setblocking(False)
        # protocol messages are small and wanted now, not after the next ack (Nagle)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.fd = self.sock.fileno()
        self.loop.add_reader(self.fd, self.on_event)

    def want_write(self, want: bool) -> None:
        if self.writing != want and not self.closed:
            self.loop.poller.register(self.fd, zmq.POLLIN | (zmq.POLLOUT if want else 0))
            self.writing = want

    def connected(self) -> bool:
        """For a connect in progress, on a wakeup: whether it has completed. Events can be
        spurious (an fd reused within one poll round), so False just means "not yet". Raises
        ``StreamError`` if the connect failed."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise StreamError(connect_failure(err))
        try:
            self.sock.getpeername()
        except OSError:
            return False
        return True

    def flush(self, out: bytes | bytearray) -> int:
        """Write what the socket takes of ``out`` now and return how many bytes that was (the
        caller drops them from its buffer); POLLOUT stays registered while some are left.
        Raises ``StreamError`` when the connection failed."""
        taken = 0
        with memoryview(out) as view:
            while taken < len(view):
                try:
                    taken += self.sock.send(view[taken:])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    raise StreamError(f"send failed: {exc.strerror or exc}") from None
        self.want_write(taken < len(out))
        return taken

    def reads(self, size: int, limit: int) -> Iterator[bytes]:
        """What has arrived, in at most ``limit`` reads of up to ``size`` bytes (one busy
        connection must not starve the others); an empty read is the end of the stream, and the
        last. Raises ``StreamError`` when the connection failed."""
        for _ in range(limit):
            try:
                data = self.sock.recv(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                raise StreamError(f"receive failed: {exc.strerror or exc}") from None
            yield data
            if not data:
                return

    def send_once(self, data: bytes) -> None:
        """Best effort, never waited for: what the kernel does not take at once is lost."""
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.remove_reader(self.fd)
            self.sock.close()
