"""The CLI's test for a running router: its pid file naming a live process, zombies excluded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from weavenet.cli.client import router_pid
from weavenet.runtime import bus


def test_a_live_router_counts_a_dead_or_zombie_one_does_not(tmp_path: Path) -> None:
    pidfile = bus.Endpoints(tmp_path).pidfile
    assert router_pid(tmp_path) is None  # no pid file
    pidfile.write_text(f"{os.getpid()}\n")
    assert router_pid(tmp_path) == os.getpid()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pidfile.write_text(f"{child.pid}\n")
    # not reaped yet: a zombie, as a killed router under an init that does not reap
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    assert router_pid(tmp_path) is None
    child.wait()
    assert router_pid(tmp_path) is None  # gone altogether
