"""The router image, weavenet/weave:<version>: built offline from the repository's Dockerfile
(or taken from the cache), loaded into a lab host's dockerd, small, and runnable there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import weavenet
from tests.e2e.conftest import start_lab, stop_lab
from tests.support import wait_for
from weavenet.lab import Lab
from weavenet.lab import router_image as weave_image

pytestmark = [
    pytest.mark.root,
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("apt-get") is None, reason="the offline base needs apt"),
]

TAG = f"weavenet/weave:{weavenet.__version__}"
MAX_SIZE = 150 * 10**6  # bytes, as `docker images` counts them


@pytest.fixture(scope="module")
def built(router_image: Path) -> weave_image.Built:
    # the session's build (conftest's router_image); this is the cache hit it left
    return weave_image.build_offline()


@pytest.fixture(scope="module")
def lab(built: weave_image.Built) -> Iterator[Lab]:
    lab = start_lab(1, router_image=built.archive)
    try:
        yield lab
    finally:
        stop_lab(lab)


def run_image(lab: Lab, entrypoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.hosts[0].run(["docker", "run", "--rm", "--network", "none", "--entrypoint",
                             entrypoint, TAG, *args], check=False, timeout=120)


def test_the_image_is_small_and_starts_weave_supervisor(built: weave_image.Built,
                                                        lab: Lab) -> None:
    assert built.tag == TAG
    assert built.size <= MAX_SIZE, f"{built.size / 1e6:.1f} MB"
    img = lab.hosts[0].docker().images.get(TAG)
    assert img.attrs["Config"]["Entrypoint"] == ["weave-supervisor"]
    assert img.attrs["Size"] == built.size


def test_the_supervisor_and_the_cli_run_in_the_image(lab: Lab) -> None:
    r = run_image(lab, "weave-supervisor", "--help")
    assert r.returncode == 0, r.stderr
    assert "usage: weave-supervisor" in r.stdout
    r = run_image(lab, "weave", "version")
    assert weavenet.__version__ in r.stdout, r.stdout + r.stderr


def test_the_image_has_the_network_tools_the_router_calls(lab: Lab) -> None:
    r = run_image(lab, "sh", "-c", "ip -V && iptables -V && conntrack -V")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "iproute2" in r.stdout and "nf_tables" in r.stdout and "conntrack" in r.stdout
    # The actors' imports (compiled extensions, libsodium, libzmq) resolve in the image.
    r = run_image(lab, "python3", "-c",
                  "import zmq, nacl.bindings, msgpack, pyroute2, actors.netconf, supervisor")
    assert r.returncode == 0, r.stderr


def test_weave_lab_image_writes_an_archive_docker_load_takes(built: weave_image.Built, lab: Lab,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "weave.tar"
    cli = Path(sys.executable).parent / "weave-lab"
    r = subprocess.run([str(cli), "image", "--output", str(out)], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "MB" in r.stdout and str(out) in r.stdout
    host = lab.hosts[0]
    host.run(["docker", "rmi", TAG])
    assert TAG in host.run(["docker", "load", "-i", str(out)], timeout=300).stdout
    assert host.run(["docker", "image", "inspect", "-f", "{{.Size}}", TAG]).stdout.strip() == \
        str(built.size)


def test_the_router_runs_from_the_image(lab: Lab) -> None:
    # What `weave launch` will do with the image: the host's network, the capabilities the
    # actors need (--privileged is refused by runc in nested labs), the run and state dirs.
    host = lab.hosts[0]
    run, state = str(host.run_dir), str(host.state_dir)
    host.run(["docker", "run", "-d", "--name", "weave-image-test", "--network", "host",
              "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", "--device", "/dev/net/tun",
              "-v", f"{run}:{run}", "-v", f"{state}:{state}", TAG,
              "--run-dir", run, "--state-dir", state], timeout=120)
    try:
        def all_running() -> str | None:
            out = host.run(["weave", "status"], check=False, timeout=30).stdout
            return out if sum(" running " in line for line in out.splitlines()) == 5 else None

        out = wait_for(all_running, 60, "the five actors running in the router container",
                       interval=1.0)
        assert "Supervisor: pid 1" in out  # the container's entrypoint is the supervisor
    finally:
        host.run(["docker", "rm", "-f", "weave-image-test"], check=False, timeout=60)
