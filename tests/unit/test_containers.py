"""`weave`'s handling of what users type as CONTAINER, and of docker run's errors."""

from __future__ import annotations

import pytest

from weavenet.cli import main as cli
from weavenet.cli.containers import check_spec, docker_error
from weavenet.runtime.bus import BusError


def test_the_line_that_says_what_went_wrong_is_picked_from_docker_run_stderr():
    pull = ("Unable to find image 'ubuntu:latest' locally\n"
            "docker: Error response from daemon: pull access denied for ubuntu.\n\n"
            "Run 'docker run --help' for more information\n")
    want = "docker: Error response from daemon: pull access denied for ubuntu."
    assert docker_error(pull) == want
    flag = ("unknown flag: --bogus\n\nUsage:  docker run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\n"
            "Run 'docker run --help' for more information\n")
    assert docker_error(flag) == "unknown flag: --bogus"
    warned = "WARNING: IPv4 forwarding is disabled. Networking will not work.\nboom\n"
    assert docker_error(warned) == "boom"
    assert docker_error("") == ""


# -- what a user may type as CONTAINER ----------------------------------------------------------


@pytest.mark.parametrize("spec", ["web", "my_app.1-2", "/web", "3f2a" * 16, "pid:1",
                                  "pid:4194304", "netns:/var/run/netns/c1"])
def test_well_formed_container_specs_pass(spec: str) -> None:
    assert check_spec(spec) == spec


@pytest.mark.parametrize("spec", ["foo\nbar", "", "-rf", "a b", "x" * 129, "web;ls", "pid:",
                                  "pid:0", "pid:-1", "pid:01", "pid:4194305", "pid:1e3",
                                  "pid:" + "9" * 100, "netns:", "netns:relative",
                                  "netns:/a\nb", "netns:/" + "a" * 5000, "\x1b[31mred"])
def test_malformed_container_specs_are_usage_errors_on_one_line(spec: str) -> None:
    with pytest.raises(BusError) as ei:
        check_spec(spec)
    assert ei.value.code == "usage"
    assert "\n" not in ei.value.reason and len(ei.value.reason) < 200


@pytest.mark.parametrize("argv", [["attach", "10.0.1.9/24", "foo\nbar"],
                                  ["detach", "10.0.1.9/24", "pid:x\ny"],
                                  ["attach", "10.0.1.9/24", "n" * 100_000],
                                  ["connect", "h" * 100_000],
                                  ["connect", "a\nb"],
                                  ["no\ncommand"],
                                  ["launch", "--name", "x\n" * 1000]])
def test_the_cli_refuses_malformed_names_with_one_escaped_line_and_status_2(
        argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WEAVE_RUN_DIR", str(tmp_path / "run"))  # not running: checks come first
    monkeypatch.setenv("WEAVE_STATE_DIR", str(tmp_path / "state"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("weave: ") and len(err) < 300, err


def test_a_reason_from_the_router_is_printed_on_one_line(capsys) -> None:
    assert cli.fail("bad\nname\x1b", 1) == 1
    assert capsys.readouterr().err == "weave: bad\\nname\\x1b\n"
