"""The launch configuration: what `weave launch` writes, what the supervisor and actors read."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from weavenet.runtime.defaults import CONTAINER_MTU, PORT, STATE_DIR
from weavenet.runtime.launch import LaunchConfig, check_mtu, check_port
from weavenet.runtime.request import UsageError

# What `weave launch 10.0.0.1/16 10.1.0.2 --password X` wrote before the dataclass.
CLI_BODY = {
    "ip": "10.0.0.1", "range": "10.0.0.0/16", "peers": ["10.1.0.2:6783"], "port": 6783,
    "mtu": 1394, "name": None, "nickname": None, "fastdp": True, "debug": False,
    "state_dir": "/var/lib/weave", "encryption": True,
}


def test_the_cli_body_decodes_and_encodes_with_the_same_keys_first():
    config = LaunchConfig.from_body(CLI_BODY)
    assert config.peers == ("10.1.0.2:6783",) and config.mtu == 1394 and config.encryption
    body = config.to_body()
    assert list(body)[:len(CLI_BODY)] == list(CLI_BODY)
    assert {k: body[k] for k in CLI_BODY} == CLI_BODY
    assert LaunchConfig.from_body(msgpack.unpackb(msgpack.packb(body))) == config


def test_a_partial_body_takes_the_defaults():
    config = LaunchConfig.from_body({"state_dir": "/tmp/x", "debug": True})
    assert config == LaunchConfig(state_dir="/tmp/x", debug=True)
    assert (config.port, config.mtu, config.peers, config.network) == (PORT, CONTAINER_MTU, (),
                                                                      None)
    assert LaunchConfig.from_body({}).state_dir == STATE_DIR
    assert LaunchConfig.from_body({"nickname": ""}).nickname == ""  # the default one


def test_what_the_supervisor_settles_survives_the_round_trip():
    config = dataclasses.replace(LaunchConfig.from_body(CLI_BODY), peer_name="aa:bb:cc:dd:ee:ff",
                                 nickname="host1", foreground=True)
    assert LaunchConfig.from_body(config.to_body()) == config
    assert str(config.network) == "10.0.0.0/16"


@pytest.mark.parametrize("change", [
    {"port": 0}, {"port": 65536}, {"port": "6783"}, {"port": True},
    {"mtu": 575}, {"mtu": 65536}, {"mtu": None},
    {"peers": "10.1.0.2"}, {"peers": ["not a host"]}, {"peers": [7]},
    {"ip": "10.0.0.300"}, {"range": "10.0.0.1/16"}, {"range": 5},
    {"debug": "yes"}, {"encryption": 1}, {"state_dir": ""}, {"nickname": "n" * 300},
    {"name": ""},
])
def test_bad_fields_are_usage_errors(change):
    with pytest.raises(UsageError):
        LaunchConfig.from_body({**CLI_BODY, **change})


def test_port_and_mtu_ranges_are_checked_with_one_line_messages():
    assert check_port(1) == 1 and check_port(65535) == 65535
    assert check_mtu(576) == 576
    with pytest.raises(UsageError, match="port must be 1-65535"):
        check_port(0)
    with pytest.raises(UsageError, match="mtu must be 576-65535"):
        check_mtu(70000)


def test_the_status_address_is_loopback_6782_by_default_and_empty_disables_it():
    assert LaunchConfig.from_body({}).status_addr == "127.0.0.1:6782"
    assert LaunchConfig.from_body({"status_addr": ""}).status_addr == ""
    assert LaunchConfig.from_body({"status_addr": "0.0.0.0"}).status_addr == "0.0.0.0:6782"
    assert LaunchConfig.from_body({"status_addr": "[::1]:9000"}).status_addr == "[::1]:9000"
    for bad in ("127.0.0.1:99999", "a b:1", 5):
        with pytest.raises(UsageError, match="status address"):
            LaunchConfig.from_body({"status_addr": bad})
