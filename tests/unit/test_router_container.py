"""The router container's specification: what `weave launch` asks Docker for, and what it keeps
out of it (the password)."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest

import weavenet
from weavenet.cli import router_container
from weavenet.runtime.launch import (
    LaunchConfig,
    add_launch_options,
    body_from_options,
)

CONFIG = LaunchConfig(ip="10.0.0.1", range="10.0.0.0/16", peers=("10.1.0.2", "h3:7000"),
                      port=7783, mtu=1394, name="aa:bb:cc:dd:ee:ff", nickname="host1",
                      fastdp=False, debug=True, state_dir="/s", encryption=True)


def parse(args: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_launch_options(p)
    return p.parse_args(args)


@pytest.mark.parametrize("config", [CONFIG, LaunchConfig(state_dir="/s")])
def test_the_launch_options_round_trip_through_the_supervisors_arguments(config):
    body = body_from_options(parse(config.to_args()))
    # what the supervisor settles itself (identity, encryption) is not an argument
    back = LaunchConfig.from_body({**body, "state_dir": "/s", "encryption": config.encryption})
    assert back == config


def test_absent_options_leave_the_config_files_fields_alone():
    assert body_from_options(parse([])) == {}


def test_the_spec_runs_weave_supervisor_on_the_hosts_network_with_named_capabilities(tmp_path):
    spec = router_container.run_spec(CONFIG, Path("/r"), Path("/s"), "unix:///d/docker.sock",
                                     Path("/s/password"))
    assert spec["image"] == f"weavenet/weave:{weavenet.__version__}"
    assert spec["name"] == "weave"
    assert (spec["network_mode"], spec["pid_mode"]) == ("host", "host")
    assert "privileged" not in spec
    assert set(spec["cap_add"]) == {"NET_ADMIN", "NET_RAW", "SYS_ADMIN"}
    assert spec["devices"] == ["/dev/net/tun:/dev/net/tun:rwm"]
    assert spec["restart_policy"] == {"Name": "unless-stopped"}
    # the same paths inside and out, so the CLI on the host finds the control socket
    assert spec["volumes"] == {p: {"bind": p, "mode": "rw"}
                               for p in ("/r", "/s", "/d/docker.sock")}
    assert spec["environment"] == {"DOCKER_HOST": "unix:///d/docker.sock"}
    args = spec["command"]
    assert args[:7] == ["--run-dir", "/r", "--state-dir", "/s", "--router", "container",
                        "--foreground"]
    assert args[-2:] == ["--password-file", "/s/password"]
    assert "10.0.0.1" in args and "h3:7000" in args


def test_no_password_in_the_spec(tmp_path):
    secret = b"s3cret-password"
    path = router_container.write_password(tmp_path, secret)
    spec = router_container.run_spec(CONFIG, tmp_path, tmp_path, None, path)
    assert secret.decode() not in json.dumps(spec)
    assert path is not None and path.read_bytes() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert router_container.write_password(tmp_path, None) is None
    assert not path.exists()  # a launch without a password leaves none behind


def test_the_docker_socket_comes_from_docker_host():
    assert router_container.docker_socket(None) == "/var/run/docker.sock"
    assert router_container.docker_socket("unix:///x/d.sock") == "/x/d.sock"
    assert router_container.docker_socket("tcp://1.2.3.4:2375") is None
    spec = router_container.run_spec(LaunchConfig(), Path("/r"), Path("/s"), "tcp://h:2375", None)
    assert list(spec["volumes"]) == ["/r", "/s"]
    assert "--password-file" not in spec["command"]


def test_weave_router_picks_launchs_default_and_a_bad_one_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path, monkeypatch) -> None:
    from weavenet.cli import main as cli

    monkeypatch.delenv("WEAVE_ROUTER", raising=False)
    assert cli.default_router() == "container"
    monkeypatch.setenv("WEAVE_ROUTER", "process")
    assert cli.default_router() == "process"
    monkeypatch.setenv("WEAVE_ROUTER", "vm\n")
    monkeypatch.setenv("WEAVE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("WEAVE_STATE_DIR", str(tmp_path / "state"))
    assert cli.main(["launch", "10.0.0.1/16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "WEAVE_ROUTER" in err and "container, process" in err, err
    assert not (tmp_path / "state").exists()  # refused before anything was written


def test_weave_status_says_which_mode_runs() -> None:
    from weavenet.cli.statusview import format_status

    assert "Router: container (docker logs weave)" in format_status({"router": "container"})
    assert "Router: process (on the host)" in format_status({"router": "process"})
    assert "Router: process" in format_status({})  # a router from before the field
