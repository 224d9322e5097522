"""Non-blocking TCP plumbing over loopback: listening, dialing, reading, flushing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

from weavenet.runtime import tcp
from weavenet.runtime.log import stderr_logger


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = tcp.listen(0)
    yield sock
    sock.close()


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def eventually(probe: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return value


class Dials:
    def __init__(self) -> None:
        self.opened: list[tuple[str, socket.socket, bool]] = []
        self.failed: list[tuple[str, str]] = []
        self.dialer = tcp.Dialer(lambda *a: self.opened.append(a),
                                 lambda *a: self.failed.append(a))

    def close(self) -> None:
        for _, sock, _ in self.opened:
            sock.close()
        self.dialer.close()


@pytest.fixture
def dials() -> Iterator[Dials]:
    d = Dials()
    yield d
    d.close()


class Loop:
    """Stands in for the actor: its poller and the readers registered there."""

    def __init__(self) -> None:
        self.poller = zmq.Poller()
        self.readers: dict[int, Callable[[], None]] = {}

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.readers[fd] = callback
        self.poller.register(fd, zmq.POLLIN)

    def remove_reader(self, fd: int) -> None:
        del self.readers[fd]
        self.poller.unregister(fd)

    def events(self, fd: int) -> int:
        return dict(self.poller.sockets).get(fd, 0)


def stream_of(sock: socket.socket, loop: Loop | None = None) -> tcp.Stream:
    return tcp.Stream(sock, loop or Loop(), lambda: None)


def pair(listener: socket.socket, loop: Loop) -> tuple[tcp.Stream, socket.socket]:
    client = socket.create_connection(("127.0.0.1", port_of(listener)))
    accepted = eventually(lambda: list(tcp.accept(listener, 1, stderr_logger())))
    sock, address = accepted[0]  # type: ignore[index]
    assert address == f"127.0.0.1:{client.getsockname()[1]}"
    return stream_of(sock, loop), client


def test_an_ip_address_is_dialled_at_once(listener: socket.socket, dials: Dials) -> None:
    dials.dialer.dial(f"127.0.0.1:{port_of(listener)}")
    assert dials.dialer.resolving == [] and dials.failed == []
    ((address, sock, connected),) = dials.opened
    assert address == f"127.0.0.1:{port_of(listener)}"
    assert not sock.getblocking()
    stream = stream_of(sock)
    assert connected or eventually(stream.connected)


def test_a_host_name_is_dialled_once_resolved_preferring_ipv4(listener: socket.socket,
                                                               dials: Dials) -> None:
    address = f"localhost:{port_of(listener)}"
    dials.dialer.dial(address)
    assert dials.opened == []
    eventually(lambda: (dials.dialer.poll(), dials.opened or dials.failed)[1])
    assert dials.failed == [] and dials.dialer.resolving == []
    ((name, sock, _),) = dials.opened
    assert name == address and sock.family == socket.AF_INET


def test_a_name_that_does_not_resolve_fails_with_the_reason(dials: Dials) -> None:
    dials.dialer.dial("no-such-host.invalid:6783")
    assert dials.dialer.resolving == ["no-such-host.invalid:6783"]
    eventually(lambda: (dials.dialer.poll(), dials.failed)[1], timeout=30)
    ((address, reason),) = dials.failed
    assert address == "no-such-host.invalid:6783" and reason.startswith("cannot resolve: ")


def test_a_cancelled_resolution_reports_nothing(dials: Dials) -> None:
    dials.dialer.dial("no-such-host.invalid:6783")
    dials.dialer.cancel("no-such-host.invalid:6783")
    assert dials.dialer.resolving == []
    dials.dialer.poll()
    assert dials.opened == [] and dials.failed == []


def test_a_refused_connect_is_a_stream_error(dials: Dials) -> None:
    spare = tcp.listen(0)
    port = port_of(spare)
    spare.close()  # nothing listens there now
    dials.dialer.dial(f"127.0.0.1:{port}")
    if dials.failed:  # refused synchronously
        assert dials.failed == [(f"127.0.0.1:{port}", "connect: ECONNREFUSED")]
        return
    stream = stream_of(dials.opened[0][1])
    with pytest.raises(tcp.StreamError, match="connect: ECONNREFUSED"):
        eventually(stream.connected)


def test_accept_takes_at_most_its_limit_per_wakeup(listener: socket.socket) -> None:
    clients = [socket.create_connection(("127.0.0.1", port_of(listener))) for _ in range(3)]
    time.sleep(0.05)
    log = stderr_logger()
    first = list(tcp.accept(listener, 2, log))
    rest = list(tcp.accept(listener, 2, log))
    assert (len(first), len(rest)) == (2, 1)
    assert list(tcp.accept(listener, 2, log)) == []
    for sock, _ in first + rest:
        sock.close()
    for c in clients:
        c.close()


def test_pollout_is_registered_only_while_bytes_are_left(listener: socket.socket) -> None:
    loop = Loop()
    stream, client = pair(listener, loop)
    assert stream.fd in loop.readers and loop.events(stream.fd) == zmq.POLLIN
    out = bytearray(b"hello")
    taken = stream.flush(out)
    del out[:taken]  # the caller drops what was taken: the buffer is free to resize
    assert taken == 5 and not stream.writing and client.recv(5) == b"hello"
    big = bytearray(64 * 1024 * 1024)  # more than loopback's socket buffers take at once
    taken = stream.flush(big)
    assert 0 < taken < len(big) and stream.writing
    assert loop.events(stream.fd) == zmq.POLLIN | zmq.POLLOUT
    del big[:taken]
    client.setblocking(False)
    while True:  # drain what arrived, then flush again until the buffer is empty
        try:
            client.recv(1 << 20)
        except BlockingIOError:
            del big[:stream.flush(big)]
            if not big:
                break
            time.sleep(0.001)
    assert not stream.writing and loop.events(stream.fd) == zmq.POLLIN
    stream.close()  # out of the loop, and closed
    assert loop.readers == {} and loop.events(stream.fd) == 0 and stream.sock.fileno() == -1
    stream.close()  # twice is harmless
    client.close()


def test_reads_are_bounded_and_end_at_the_end_of_the_stream(listener: socket.socket) -> None:
    stream, client = pair(listener, Loop())
    assert list(stream.reads(4, 8)) == []  # nothing has arrived: no read blocks
    client.sendall(b"abcdefghij")
    time.sleep(0.05)
    assert list(stream.reads(4, 2)) == [b"abcd", b"efgh"]
    client.close()
    time.sleep(0.05)
    assert list(stream.reads(4, 8)) == [b"ij", b""]
    stream.close()


def test_a_reset_connection_is_a_stream_error(listener: socket.socket) -> None:
    stream, client = pair(listener, Loop())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # linger 0: an RST
    time.sleep(0.05)
    with pytest.raises(tcp.StreamError, match="receive failed: "):
        list(stream.reads(4, 8))
    stream.close()


def test_can_connect_says_whether_a_port_takes_connections(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert tcp.can_connect(f"127.0.0.1:{port}", 2.0)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    closed_port = free.getsockname()[1]
    free.close()  # nobody listens there now
    assert not tcp.can_connect(f"127.0.0.1:{closed_port}", 2.0)
    assert not tcp.can_connect("not an address", 2.0)


def test_probes_run_off_the_loop_and_report_each_with_its_context(
        listener: socket.socket) -> None:
    probes: tcp.Probes[str] = tcp.Probes(timeout=2.0)
    try:
        probes.probe(f"127.0.0.1:{port_of(listener)}", "open")
        probes.probe("not an address", "bad")
        results: dict[str, bool] = {}
        deadline = time.monotonic() + 5
        while len(results) < 2 and time.monotonic() < deadline:
            results.update(probes.done())
            time.sleep(0.01)
        assert results == {"open": True, "bad": False}
        assert probes.done() == []
    finally:
        probes.close()
