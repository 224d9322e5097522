"""Fixtures for end-to-end tests: labs of simulated hosts, always torn down.

Every lab gets a prefix unique to this run (`wt<4 hex>`), so concurrent runs never clash. Labs
are torn down by their fixture's finalizer, again at session end, at interpreter exit, and on
SIGTERM/SIGHUP, so an interrupted run leaves no namespaces and no dockerds behind.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from weavenet.lab import Lab, LabError
from weavenet.lab.lab import unique_prefix

_live: list[Lab] = []
_handlers_installed = False
_owner_pid = os.getpid()


def _teardown_all() -> None:
    # Forked children (pyroute2 forks helpers, then SIGTERMs them) inherit the signal handlers
    # and atexit hooks; only the test process itself may tear labs down.
    if os.getpid() != _owner_pid:
        return
    while _live:
        lab = _live.pop()
        try:
            lab.down()
        except LabError as e:
            print(f"lab teardown: {e}", file=sys.stderr)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _teardown_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    # SIGINT needs nothing: pytest turns it into KeyboardInterrupt and runs the finalizers.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _teardown_all()


def skip_reason(docker: bool) -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces)"
    tools = ["nsenter", "iptables", "ip"] + (["dockerd", "docker"] if docker else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"the lab needs {', '.join(missing)} (not installed)"
    return None


def start_lab(n_hosts: int, docker: bool = True, **lab_args: Any) -> Lab:
    """An up lab, registered for teardown however the run ends (skips if it cannot run here)."""
    reason = skip_reason(docker)
    if reason:
        pytest.skip(reason)
    _install_handlers()
    lab = Lab(n_hosts, prefix=unique_prefix(), docker=docker, **lab_args)
    _live.append(lab)  # before up(): a half-built lab must be torn down too
    lab.up()
    return lab


def stop_lab(lab: Lab) -> None:
    if lab in _live:
        _live.remove(lab)
    lab.down()


@pytest.fixture
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """`lab_factory(n, docker=True, nat=())` returns an up lab; all are torn down after the
    test."""
    labs: list[Lab] = []

    def make(n_hosts: int, docker: bool = True, **lab_args: Any) -> Lab:
        lab = start_lab(n_hosts, docker, **lab_args)
        labs.append(lab)
        return lab

    yield make
    errors = []
    for lab in reversed(labs):
        try:
            stop_lab(lab)
        except LabError as e:
            errors.append(e)
    if errors:
        raise errors[0]


def _module_lab(n_hosts: int, **lab_args: Any) -> Iterator[Lab]:
    lab = start_lab(n_hosts, docker=True, **lab_args)
    try:
        yield lab
    finally:
        stop_lab(lab)


@pytest.fixture(scope="session")
def router_image() -> Path:
    """The router image's `docker save` archive, built once per run (a cache hit when the source
    has not changed since the last build; a cold build takes a minute or two)."""
    if shutil.which("apt-get") is None:
        pytest.skip("the offline base of the router image needs apt")
    from weavenet.lab import router_image as weave_image

    return weave_image.build_offline().archive


@pytest.fixture(scope="module")
def lab2_container(router_image: Path) -> Iterator[Lab]:
    """Two hosts with dockerd and the router image: `weave launch` starts the router
    container there (WEAVE_ROUTER=container), shared by the module's tests."""
    yield from _module_lab(2, router_image=router_image)


@pytest.fixture(scope="module")
def lab1() -> Iterator[Lab]:
    """One host with dockerd, shared by the module's tests (undo your faults)."""
    yield from _module_lab(1)


@pytest.fixture(scope="module")
def lab2() -> Iterator[Lab]:
    """Two hosts with dockerd, shared by the module's tests (undo your faults)."""
    yield from _module_lab(2)


@pytest.fixture(scope="module")
def lab3() -> Iterator[Lab]:
    """Three hosts with dockerd, shared by the module's tests (undo your faults)."""
    yield from _module_lab(3)


@pytest.fixture(scope="module")
def lab3_nat3() -> Iterator[Lab]:
    """Three hosts with dockerd, host3 behind NAT (its own masquerading router), shared by the
    module's tests."""
    yield from _module_lab(3, nat=[3])
