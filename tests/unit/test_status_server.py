"""The router's HTTP server: what it serves, and that nothing on it changes state."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from tests.unit.status_helper import sample_status
from weavenet.runtime.bus import FAILED, BusError
from weavenet.web.server import StatusServer


class Router:
    """Stands for the supervisor's control socket: counts the status requests it answers."""

    def __init__(self) -> None:
        self.asked = 0
        self.down = False

    def status(self) -> dict:
        self.asked += 1
        if self.down:
            raise BusError(FAILED, "the router did not answer 'status' in 5s")
        return sample_status()


@pytest.fixture(scope="module")
def server_and_router() -> Iterator[tuple[StatusServer, Router]]:
    router = Router()
    server = StatusServer(("127.0.0.1", 0), router.status).start()
    try:
        yield server, router
    finally:
        server.close()


@pytest.fixture
def served(server_and_router: tuple[StatusServer, Router]) -> tuple[StatusServer, Router]:
    server, router = server_and_router
    router.asked, router.down = 0, False
    return server, router


def request(server: StatusServer, method: str, path: str,
            body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        conn.request(method, path, body=body)
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), res.read()
    finally:
        conn.close()


def test_status_and_report_are_the_cli_s_json(served) -> None:
    server, _ = served
    code, headers, body = request(server, "GET", "/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == sample_status()
    code, _, body = request(server, "GET", "/report")
    assert code == 200 and json.loads(body)["router"]["peer"]["nickname"] == "host1"


def test_metrics_are_prometheus_text(served) -> None:
    server, _ = served
    code, headers, body = request(server, "GET", "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=")
    assert b"weave_connections{" in body


def test_the_page_is_self_contained(served) -> None:
    server, _ = served
    code, headers, body = request(server, "GET", "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert 'fetch("/report"' in page and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page and "<script src" not in page and "<link" not in page


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/metrics", "/status", "/report", "/stop"])
def test_state_changing_methods_are_refused_without_asking_the_router(
        served, method: str, path: str) -> None:
    server, router = served
    code, headers, _ = request(server, method, path, body=b'{"type": "stop"}')
    assert code == 405 and headers["Allow"] == "GET, HEAD"
    assert router.asked == 0


def test_unknown_methods_and_paths(served) -> None:
    server, router = served
    assert request(server, "BREW", "/")[0] == 501
    assert request(server, "GET", "/stop")[0] == 404
    assert request(server, "HEAD", "/report")[0] == 200
    assert router.asked == 1  # HEAD /report


def test_a_router_that_does_not_answer_is_a_503(served) -> None:
    server, router = served
    router.down = True
    code, _, body = request(server, "GET", "/metrics")
    assert code == 503 and "did not answer" in json.loads(body)["error"]
