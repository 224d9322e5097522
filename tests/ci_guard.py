"""Under CI, a test marked `root` or `docker` must run: its skip is turned into a failure.

A skipped privileged test reads like a pass in the summary line. The CI machine has root and
dockerd, so there such a skip can only mean the environment broke (no /dev/net/tun, dockerd
missing, a fixture that gave up) and the tests that matter most silently did not run.
Registered for the whole suite by tests/conftest.py; CI is on when the environment variable
CI is set to anything but "", "0" or "false".
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

GUARDED_MARKERS = ("root", "docker")


def ci_enabled() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not ci_enabled():
        return
    marks = [m for m in GUARDED_MARKERS if item.get_closest_marker(m) is not None]
    if not marks:
        return
    # A skip's longrepr is (file, line, "Skipped: reason").
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (f"{item.nodeid} is marked {'/'.join(marks)} and must run under CI, "
                       f"but was skipped: {reason}")
