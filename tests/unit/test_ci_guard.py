"""The CI guard: skipped root/docker tests fail under CI and only there (see tests/ci_guard.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SUITE = textwrap.dedent("""
    import pytest

    @pytest.mark.root
    def test_needs_root():
        pytest.skip("pretend we are not root")

    @pytest.mark.docker
    @pytest.mark.skipif(True, reason="pretend there is no dockerd")
    def test_needs_docker():
        pass

    def test_plain_skip():
        pytest.skip("nothing privileged about it")

    @pytest.mark.root
    @pytest.mark.xfail(reason="known", strict=False)
    def test_expected_failure():
        raise AssertionError

    @pytest.mark.root
    def test_runs():
        pass
""")


def run_suite(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    root: r\n    docker: d\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.ci_guard", "-p", "no:cacheprovider",
         "-rA", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_under_ci_a_skipped_root_or_docker_test_fails(tmp_path: Path) -> None:
    r = run_suite(tmp_path, "true")
    assert r.returncode == 1, r.stdout
    assert "FAILED test_suite.py::test_needs_root" in r.stdout
    # skipped during setup (a skipif mark, a fixture giving up): reported as an error
    assert "ERROR test_suite.py::test_needs_docker" in r.stdout
    assert "pretend there is no dockerd" in r.stdout
    assert "SKIPPED [1] test_suite.py" in r.stdout  # the unmarked skip stays a skip
    assert "XFAIL test_suite.py::test_expected_failure" in r.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 xfailed, 1 error" in r.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_skips_stay_skips(tmp_path: Path, ci: str | None) -> None:
    r = run_suite(tmp_path, ci)
    assert r.returncode == 0, r.stdout
    assert "1 passed, 3 skipped, 1 xfailed" in r.stdout
