"""What the functional and end-to-end tests share: waiting on state, pinging, running weave.

Tests synchronise on the state they need: `wait_for` polls a probe until it holds and, on
timeout, fails with what was awaited and the last value or exception the probe gave. Where a
fixed time *is* the point ("nothing happens during these 3 s"), `holds_for` checks the
condition throughout the interval rather than once at its end.

The ping, listening and `weave` helpers work on a lab `Host` (see `LabHost`) or, for
`netns_pings`, on a namespace path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class LabHost(Protocol):
    """The part of weavenet.lab.Host these helpers use."""

    name: str

    def run(self, cmd: Any, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]: ...

    def exec_in_container(self, container: str, cmd: Any, check: bool = True,
                          timeout: float = 60) -> subprocess.CompletedProcess[str]: ...

    def container_pid(self, container: str) -> int: ...


# --- waiting ---------------------------------------------------------------------------------


def wait_for(probe: Callable[[], T], timeout: float = 15.0, what: str = "the condition",
             interval: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy and return that.

    An exception from the probe counts as "not yet" (the router may be restarting, a status
    may not carry the field yet); if the time runs out, the test fails naming `what` and the
    last value or exception seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    error: Exception | None = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - reported below if it never settles
            last, error = exc, exc
        else:
            error = None
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; last seen: {last!r}"
            ) from error
        time.sleep(interval)


def seconds_until(probe: Callable[[], object], timeout: float, what: str,
                  interval: float = 0.05) -> float:
    """Seconds until `probe` holds (see `wait_for`); fails the test after `timeout`."""
    start = time.monotonic()
    wait_for(probe, timeout, what, interval)
    return time.monotonic() - start


def holds_for(probe: Callable[[], T], duration: float, what: str, interval: float = 0.2) -> T:
    """Check that `probe` stays truthy for `duration` seconds; fail at the first lapse.

    For checks whose point is a span of time: a crash-looping actor stays failed, a refused
    peer is not redialled. Returns the last value.
    """
    start = time.monotonic()
    while True:
        value = probe()
        elapsed = time.monotonic() - start
        assert value, f"{what} stopped holding after {elapsed:.1f}s: {value!r}"
        if elapsed >= duration:
            return value
        time.sleep(interval)


# --- ping ------------------------------------------------------------------------------------


def ping_argv(ip: str, count: int = 1, size: int | None = None) -> list[str]:
    """One-second-bounded ping, in the syntax both iputils and busybox accept."""
    argv = ["ping", "-c", str(count), "-W", "1"]
    if count > 1:
        argv += ["-i", "0.2"]
    if size is not None:
        argv += ["-s", str(size)]
    return [*argv, ip]


def replies(ping_output: str) -> int:
    """How many echo replies a ping reports (iputils: "N received", busybox: "N packets
    received")."""
    found = re.search(r"(\d+) (?:packets )?received", ping_output)
    if found is None:
        raise AssertionError(f"no ping summary in {ping_output!r}")
    return int(found.group(1))


def netns_pings(netns: str, ip: str, count: int = 1, size: int | None = None) -> bool:
    """Whether a ping from the namespace at path `netns` gets an answer from `ip`."""
    r = subprocess.run(["nsenter", f"--net={netns}", *ping_argv(ip, count, size)],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def host_pings(host: LabHost, ip: str) -> bool:
    """Whether a ping from the lab host itself gets an answer from `ip`."""
    return host.run(ping_argv(ip), check=False, timeout=20).returncode == 0


def container_pings(host: LabHost, container: str, ip: str, size: int | None = None) -> bool:
    """Whether a ping from a container of the lab host gets an answer from `ip`."""
    r = host.exec_in_container(container, ping_argv(ip, size=size), check=False, timeout=20)
    return r.returncode == 0


def eventually_pings(host: LabHost, container: str, ip: str, timeout: float = 30.0,
                     size: int | None = None) -> float:
    """Seconds until a ping from the container got through; fails the test after `timeout`."""
    return seconds_until(lambda: container_pings(host, container, ip, size), timeout,
                         f"{host.name}: {container[:12]} to reach {ip}")


def file_says(host: LabHost, container: str, path: str, text: str) -> bool:
    """Whether a file in the container holds `text` (what a background server wrote)."""
    return text in host.exec_in_container(container, ["cat", path], check=False).stdout


def listening(host: LabHost, port: int, udp: bool = False, pid: int | None = None) -> bool:
    """Whether a socket listens on `port` on the host, or in the namespace of process `pid`
    (a container's init). Servers started in the background are awaited with this."""
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    r = host.run([*prefix, "ss", "-Hln" + ("u" if udp else "t"), f"sport = :{port}"],
                 check=False, timeout=20)
    return r.returncode == 0 and bool(r.stdout.strip())


def wait_listening(host: LabHost, port: int, udp: bool = False, container: str | None = None,
                   timeout: float = 10.0) -> None:
    """Wait until a server started in the background listens on `port`, on the host or in
    one of its containers (a lab `Host`: the container's namespace is found by its pid)."""
    pid = host.container_pid(container) if container else None
    where = f"{host.name}" + (f": {container[:12]}" if container else "")
    wait_for(lambda: listening(host, port, udp, pid), timeout,
             f"{where} to listen on {'udp' if udp else 'tcp'} {port}")


# --- the weave CLI on a lab host -------------------------------------------------------------


def weave_result(host: LabHost, *args: str,
                 timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`weave ARGS` on the host, whatever its exit status."""
    return host.run(["weave", *args], check=False, timeout=timeout)


def weave(host: LabHost, *args: str, timeout: float = 90) -> str:
    """`weave ARGS` on the host; the test fails unless it exits 0. Returns stdout, stripped."""
    r = weave_result(host, *args, timeout=timeout)
    assert r.returncode == 0, f"{host.name}: weave {' '.join(args)} failed: {r.stderr}"
    return r.stdout.strip()


def status(host: LabHost) -> dict[str, Any]:
    """`weave status --json` of the host."""
    return json.loads(weave(host, "status", "--json"))


def actor(host: LabHost, name: str) -> dict[str, Any]:
    """The host's status row of one actor (name, pid, state, restarts, status)."""
    for row in status(host)["actors"]:
        if row["name"] == name:
            return row
    raise AssertionError(f"{host.name} has no {name} actor")


def actor_status(host: LabHost, name: str) -> dict[str, Any]:
    """What the actor last reported in its heartbeat (empty before the first one)."""
    return actor(host, name).get("status") or {}


def launch_mesh(hosts: list[Any]) -> dict[str, str]:
    """`weave launch 10.0.0.N/16` on each lab host, naming the hosts before it as peers; returns
    their peer names by host name."""
    for i, h in enumerate(hosts):
        weave(h, "launch", f"10.0.0.{i + 1}/16", *(x.ip for x in hosts[:i]))
    return {h.name: status(h)["peer"]["name"] for h in hosts}


def kill_actor(host: LabHost, name: str) -> None:
    """`kill -9` one actor of the host's router (a process the test started) and wait until
    the supervisor has it running again."""
    before = actor(host, name)["pid"]
    os.kill(before, signal.SIGKILL)
    wait_for(lambda: (a := actor(host, name))["state"] == "running"
             and a["pid"] not in (None, before), 20, f"{host.name}'s {name} to be restarted")


def log_events(host: LabHost, *events: str, of: str | None = None) -> list[dict[str, Any]]:
    """The host's log records with one of `events`, optionally only actor `of`'s, in order."""
    out = []
    # before the first launch there is no log file: no events
    for line in weave_result(host, "logs").stdout.splitlines():
        with contextlib.suppress(ValueError):
            rec = json.loads(line)
            if rec.get("event") in events and of in (None, rec.get("actor")):
                out.append(rec)
    return out


# --- disruption: the longest gap in a fast ping ------------------------------------------------


class GapPinger:
    """A ping every `interval` seconds from a container of a lab host, in the background, each
    reply time-stamped (iputils `ping -D`, run in the container's namespace from the host). What
    a disruption costs the container's traffic is the longest gap between two replies.

    Use as a context manager; the ping is stopped (by its pid) on leaving. Replies go to a file,
    not a pipe, so a long run never blocks on a full pipe.
    """

    def __init__(self, host: Any, container: str, ip: str, interval: float = 0.05) -> None:
        self.host, self.container, self.ip, self.interval = host, container, ip, interval
        self.proc: subprocess.Popen[Any] | None = None

    def __enter__(self) -> GapPinger:
        self.out = tempfile.TemporaryFile(mode="w+")
        pid = self.host.container_pid(self.container)
        # -W 1: a reply later than a second is as good as lost; -n: no reverse lookups.
        self.proc = self.host.popen(["nsenter", "-t", str(pid), "-n", "ping", "-D", "-n",
                                     "-W", "1", "-i", str(self.interval), self.ip],
                                    stdout=self.out, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=10)
        self.out.close()

    def times(self) -> list[float]:
        """Wall-clock times (time.time()) of the replies so far."""
        self.out.flush()
        self.out.seek(0)
        return [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from",
                                                        self.out.read(), re.M)]

    def longest_gap(self, since: float) -> float:
        """The longest time between two replies, counted from `since` (a reply just before
        `since` starts the first gap, so a kill at `since` is inside it)."""
        times = self.times()
        before = [t for t in times if t < since]
        after = [t for t in times if t >= since]
        points = before[-1:] + after
        return max((b - a for a, b in pairwise(points)), default=float("inf"))

    def steady_since(self, since: float, seconds: float) -> bool:
        """Whether replies came without a gap of three intervals for the last `seconds`, all
        of them after `since`."""
        times = [t for t in self.times() if t >= since]
        if not times or time.time() - times[-1] > 3 * self.interval:
            return False
        start = times[-1]
        for a, b in reversed(list(pairwise(times))):
            if b - a > 3 * self.interval:
                break
            start = a
        return times[-1] - start >= seconds


def disruption_gap(host: LabHost, container: str, ip: str, disrupt: Callable[[], object],
                   steady: float = 2.0, timeout: float = 15.0) -> float:
    """What `disrupt()` costs a 50 ms ping from `container` (on `host`) to `ip`: the longest
    gap between two replies, from just before the disruption until the ping has been steady
    for `steady` seconds again (`timeout` at most after the disruption: then the gap is
    reported as `timeout`)."""
    with GapPinger(host, container, ip) as ping:
        wait_for(lambda: ping.steady_since(0, 1.0), 20, "a steady ping before the disruption")
        start = time.time()
        disrupt()
        try:
            wait_for(lambda: ping.steady_since(start, steady), timeout,
                     "a steady ping after the disruption")
        except AssertionError:
            return timeout
        return ping.longest_gap(start)
