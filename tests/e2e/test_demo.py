"""The README's first command: the demo of the seed walkthrough must keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]


def test_the_demo_runs_the_walkthrough_and_leaves_nothing_behind():
    lab = Path(sys.executable).parent / "weave-lab"
    r = subprocess.run([str(lab), "demo"], capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "all steps behaved as the README says" in r.stdout
    assert "FAILED" not in r.stdout
    for step in ("weave launch 10.0.0.2/16", "routed through host2", "fails as it should",
                 "live topology page: http://127.0.0.1:6782/", "weave status connections"):
        assert step in r.stdout
    leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(line.startswith("wd") for line in leftovers.splitlines()), leftovers
