"""Processes the lab started: identify them, signal them and wait for them, by PID.

A PID alone is not an identity once a process may have died: the kernel reuses PIDs. So the
lab remembers a ProcRef, the PID plus the process start time read from /proc, and never
signals a PID whose start time no longer matches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Executables that the lab's dockerds spawn; a process of one of these kinds whose command line
# names the lab's base directory belongs to the lab even after its parent died.
DOCKER_FAMILY = frozenset(
    {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy"}
)


@dataclass(frozen=True)
class ProcRef:
    pid: int
    start: int  # start time in clock ticks after boot (field 22 of /proc/PID/stat)

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> ProcRef:
        return cls(pid=int(data["pid"]), start=int(data["start"]))


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    start: int


def _stat(pid: int) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    return _Stat(state=fields[0], ppid=int(fields[1]), start=int(fields[19]))


def ref(pid: int) -> ProcRef | None:
    """The identity of a live process, or None if there is no such process."""
    st = _stat(pid)
    return None if st is None else ProcRef(pid, st.start)


def _reap(pid: int) -> None:
    # Our own children stay zombies until waited for; other processes are reaped by their parent.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def alive(proc: ProcRef) -> bool:
    _reap(proc.pid)
    st = _stat(proc.pid)
    return st is not None and st.start == proc.start and st.state not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _protected() -> set[int]:
    """This process and its ancestors: never signalled, whatever namespace they are in."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        st = _stat(pid)
        if st is None:
            break
        pid = st.ppid
    return pids


def descendants(roots: Iterable[int]) -> set[int]:
    """PIDs of all live processes below the given ones (not including them)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        st = _stat(pid)
        if st is not None:
            children.setdefault(st.ppid, []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def in_netns(ns_files: Iterable[Path]) -> set[int]:
    """PIDs of processes whose network namespace is one of the given namespace files."""
    ids = set()
    for path in ns_files:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            ids.add((st.st_dev, st.st_ino))
    if not ids:
        return set()
    found = set()
    for pid in _all_pids():
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{pid}/ns/net")
            if (st.st_dev, st.st_ino) in ids:
                found.add(pid)
    return found


SHIMS = frozenset({"containerd-shim", "containerd-shim-runc-v2"})


def docker_family_under(base: Path, names: frozenset[str] = DOCKER_FAMILY) -> set[int]:
    """PIDs of dockerd/containerd/shim processes (or only those called one of names) whose
    command line names a path under base."""
    prefix = str(base).rstrip("/") + "/"
    found = set()
    for pid in _all_pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0].decode(errors="replace")) not in names:
            continue
        if any(prefix in arg.decode(errors="replace") for arg in argv[1:]):
            found.add(pid)
    return found


def signal_all(procs: Iterable[ProcRef], sig: signal.Signals) -> None:
    protected = _protected()
    for proc in procs:
        if proc.pid not in protected and alive(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)


def wait_gone(procs: Iterable[ProcRef], timeout: float) -> list[ProcRef]:
    """Wait until all are gone or the timeout passes; return those still alive."""
    left = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in left if alive(p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def terminate(procs: Iterable[ProcRef], grace: float = 5.0) -> list[ProcRef]:
    """SIGTERM, wait up to grace seconds, then SIGKILL and wait; return any that survived."""
    procs = [p for p in procs if p.pid not in _protected()]
    signal_all(procs, signal.SIGTERM)
    left = wait_gone(procs, grace)
    if left:
        signal_all(left, signal.SIGKILL)
        left = wait_gone(left, 5.0)
    return left


def refs(pids: Iterable[int]) -> list[ProcRef]:
    return [r for r in (ref(pid) for pid in pids) if r is not None]
