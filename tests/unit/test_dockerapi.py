"""The Engine API client against a Unix socket that answers as dockerd does (chunked JSON)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from weavenet.host import dockerapi


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def serve(path: Path, answers: dict[str, bytes]) -> list[str]:
    """Answer each GET whose path starts with a key of ``answers``; returns the request lines."""
    seen: list[str] = []
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen()

    def run() -> None:
        while True:
            conn, _ = srv.accept()
            with conn:
                req = b""
                while b"\r\n\r\n" not in req:
                    req += conn.recv(4096)
                line = req.split(b"\r\n")[0].decode()
                seen.append(line)
                target = line.split()[1]
                conn.sendall(next(v for k, v in answers.items() if target.startswith(k)))

    threading.Thread(target=run, daemon=True).start()
    return seen


def test_inspect_ping_and_the_event_stream(tmp_path: Path):
    state = json.dumps({"Id": "c1", "State": {"Running": True, "Pid": 42}}).encode()
    ev1 = json.dumps({"Action": "start", "Actor": {"ID": "c1"}}).encode()
    ev2 = json.dumps({"Action": "destroy", "Actor": {"ID": "c2"}}).encode()
    seen = serve(tmp_path / "d.sock", {
        "/_ping": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
        "/containers/c1/json": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                               + chunked(state[:10], state[10:]),
        "/containers/gone/json": b"HTTP/1.1 404 Not Found\r\nContent-Length: 30\r\n\r\n"
                                 b'{"message":"No such container"}'[:30],
        "/containers/bad/json": b'HTTP/1.1 500 Server Error\r\nContent-Length: 17\r\n\r\n'
                                b'{"message":"boom"}'[:17],
        # one event split over two chunks, the next in the same chunk as the first's end
        "/events": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + chunked(ev1[:7], ev1[7:] + b"\n" + ev2 + b"\n"),
    })
    c = dockerapi.Client(str(tmp_path / "d.sock"), timeout=3)
    c.ping()
    assert c.inspect_container("c1") == {"Id": "c1", "State": {"Running": True, "Pid": 42}}
    assert c.inspect_container("gone") is None
    with pytest.raises(dockerapi.DockerApiError):
        c.inspect_container("bad")
    events = list(c.events(decode=True, filters={"type": "container"}))
    assert [e["Action"] for e in events] == ["start", "destroy"]
    assert seen[-1].startswith("GET /events?filters=%7B%22type%22") and "HTTP/1.1" in seen[-1]


def test_a_missing_daemon_is_an_oserror(tmp_path: Path):
    with pytest.raises(OSError):
        dockerapi.Client(str(tmp_path / "none.sock"), timeout=1).ping()


def test_the_socket_comes_from_docker_host():
    assert dockerapi.socket_path(None) == "/var/run/docker.sock"
    assert dockerapi.socket_path("unix:///x/d.sock") == "/x/d.sock"
    assert dockerapi.socket_path("tcp://1.2.3.4:2375") is None
