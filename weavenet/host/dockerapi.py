"""Just enough of Docker's Engine API for netconf, spoken over the daemon's Unix socket.

netconf asks Docker two things: a container's state (``GET /containers/ID/json``) and the
stream of container events (``GET /events``). The Docker SDK would do it, but it imports
requests, urllib3, http.client and OpenSSL's ssl: about 18 MB resident in a process that
otherwise holds ~30. Here a request is one HTTP/1.1 GET on a fresh connection
(``Connection: close``), and a response is read as Docker sends it: a status line, headers,
then a body that is chunked (the event stream, and most answers) or sized by
``Content-Length``. Anything else DOCKER_HOST may name (``tcp://``, ``ssh://``, TLS) is left
to the SDK (:func:`weavenet.host.dockerwatch.connect` decides).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import quote

DEFAULT_SOCKET = "/var/run/docker.sock"
MAX_HEADER_LINE = 8192
MAX_HEADERS = 100


class DockerApiError(OSError):
    """Docker answered with an error status, or not in HTTP."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def socket_path(docker_host: str | None) -> str | None:
    """The Unix socket DOCKER_HOST names (the default one when unset); None for tcp:// etc."""
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://"):]
    return None


def _read_head(f: BinaryIO) -> tuple[int, dict[str, str]]:
    line = f.readline(MAX_HEADER_LINE)
    parts = line.decode("latin-1").split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise DockerApiError(0, f"not an HTTP answer: {line[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = f.readline(MAX_HEADER_LINE)
        if line in (b"\r\n", b"\n", b""):
            return int(parts[1]), headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    raise DockerApiError(0, "too many headers")


def _body_chunks(f: BinaryIO, headers: dict[str, str]) -> Iterator[bytes]:
    """The body's bytes as they arrive."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(f.readline(MAX_HEADER_LINE).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            data = f.read(size)
            f.readline(MAX_HEADER_LINE)  # the CRLF after the chunk
            if len(data) < size:
                return  # the stream was cut
            yield data
    elif "content-length" in headers:
        yield f.read(int(headers["content-length"]))
    else:
        while data := f.read1(65536):  # type: ignore[attr-defined]
            yield data


class Client:
    """Docker at the Unix socket ``path``; ``timeout`` bounds each call but the event stream."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    def _get(self, target: str, timeout: float | None
             ) -> tuple[int, Iterator[bytes], socket.socket]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.path)
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
                         .encode())
            f = sock.makefile("rb")
            status, headers = _read_head(f)
            sock.settimeout(timeout)
            return status, _body_chunks(f, headers), sock
        except BaseException:
            sock.close()
            raise

    def _json(self, target: str) -> tuple[int, Any]:
        status, chunks, sock = self._get(target, self.timeout)
        with sock:
            body = b"".join(chunks)
        try:
            value = json.loads(body) if body.strip() else None
        except ValueError:
            value = body.decode(errors="replace")
        if status >= 400 and status != 404:
            message = value.get("message") if isinstance(value, dict) else value
            raise DockerApiError(status, f"Docker: {status} {message}")
        return status, value

    def ping(self) -> None:
        self._json("/_ping")

    def inspect_container(self, container_id: str) -> dict[str, Any] | None:
        """The container's attributes, None when Docker does not know it."""
        status, value = self._json(f"/containers/{quote(container_id, safe='')}/json")
        return value if status != 404 and isinstance(value, dict) else None

    def events(self, decode: bool = True, filters: dict[str, Any] | None = None
               ) -> Iterator[dict[str, Any]]:
        """Docker's events as they come (one JSON object per line), until the stream ends.
        ``decode`` is always true (the SDK's signature)."""
        target = "/events"
        if filters:
            target += "?filters=" + quote(json.dumps(filters))
        status, chunks, sock = self._get(target, None)
        with sock:
            if status >= 400:
                raise DockerApiError(status, f"Docker: {status} on {target}")
            buf = b""
            for data in chunks:
                *lines, buf = (buf + data).split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
