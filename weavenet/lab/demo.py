"""`weave-lab demo`: the seed README's walkthrough, run on three simulated hosts.

Each step prints the command as a user would type it on that host, then what happened. The
demo exits non-zero if any step does not behave as the README says, and removes its lab unless
asked to keep it (``--keep``). It says where host1's live topology page is served (inside host1's
network namespace, like everything of the lab) and how to open it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from weavenet.lab import router_image as weave_image
from weavenet.lab.host import Host
from weavenet.lab.lab import Lab, unique_prefix
from weavenet.runtime.defaults import STATUS_ADDR

CONVERGE = 20.0  # seconds a cross-host step may take to start working (peers connecting)


class Demo:
    def __init__(self, lab: Lab, verbose: bool) -> None:
        self.lab = lab
        self.verbose = verbose
        self.failures: list[str] = []

    def say(self, text: str) -> None:
        print(f"\n# {text}", flush=True)

    def run(self, host: Host, cmd: str, expect_ok: bool = True, show: bool = False) -> str:
        print(f"{host.name}# {cmd}", flush=True)
        r = host.run(["sh", "-c", cmd], check=False, timeout=120)
        out = r.stdout.strip()
        if show or self.verbose:
            for line in out.splitlines():
                print(f"    {line}")
        if (r.returncode == 0) != expect_ok:
            detail = r.stderr.strip().splitlines()[-1:] or [f"exit {r.returncode}"]
            self.fail(f"{host.name}# {cmd}: {detail[0]}")
        return out

    def check(self, host: Host, what: str, cmd: str, want: bool = True,
              within: float = CONVERGE) -> None:
        """Run cmd until its success matches `want` (peers may still be connecting)."""
        print(f"{host.name}# {cmd}", flush=True)
        deadline = time.monotonic() + (within if want else 0)
        while True:
            ok = host.run(["sh", "-c", cmd], check=False, timeout=60).returncode == 0
            if ok == want or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        verdict = ("works" if ok else "fails") + (" as it should" if ok == want else "")
        print(f"    {what}: {verdict}", flush=True)
        if ok != want:
            self.fail(f"{host.name}: {what}")

    def await_listening(self, host: Host, container: str, port: int, udp: bool = False) -> None:
        """Wait (quietly, at most 10 s) for a server just started with `docker exec -d`: a
        person types the next command slower than it binds, a script does not."""
        probe = f"docker exec {container} netstat -ln{'u' if udp else 't'} | grep -q ':{port} '"
        deadline = time.monotonic() + 10
        while host.run(["sh", "-c", probe], check=False, timeout=30).returncode != 0:
            if time.monotonic() >= deadline:
                return  # the next step will fail and say so
            time.sleep(0.2)

    def fail(self, message: str) -> None:
        print(f"    FAILED: {message}", flush=True)
        self.failures.append(message)

    def walkthrough(self) -> None:
        h1, h2, h3 = self.lab.hosts[:3]
        self.say("Three simulated hosts, each with its own dockerd: "
                 + ", ".join(f"{h.name} ({h.ip})" for h in (h1, h2, h3)))
        self.say("On host1: start the router, then an application container on 10.0.1.0/24")
        self.run(h1, "weave launch 10.0.0.1/16")
        print(page_address(self.lab, h1), flush=True)
        c1 = self.run(h1, "weave run 10.0.1.1/24 -t -i busybox")
        self.say("On host2: the same, peering with host1")
        self.run(h2, f"weave launch 10.0.0.2/16 {h1.ip}")
        c2 = self.run(h2, "weave run 10.0.1.2/24 -t -i busybox")
        self.say("The containers talk across hosts")
        self.check(h1, "ping from host1's container to host2's",
                   f"docker exec {c1} ping -c1 -W1 10.0.1.2")
        self.check(h2, "ping from host2's container to host1's",
                   f"docker exec {c2} ping -c1 -W1 10.0.1.1")
        self.say("Any protocol: a netcat TCP service on host1, a client on host2")
        self.run(h1, f"docker exec -d {c1} sh -c 'nc -l -p 4422 > /tmp/got'")
        self.await_listening(h1, c1, 4422)
        self.check(h2, "echo 'Hello, world.' | nc 10.0.1.1 4422",
                   f"docker exec {c2} sh -c \"echo 'Hello, world.' | nc 10.0.1.1 4422\"")
        self.check(h1, "the service received 'Hello, world.'",
                   f"docker exec {c1} grep -q 'Hello, world.' /tmp/got")
        self.say("... and UDP (OpenBSD netcat in the image)")
        self.run(h1, f"docker exec -d {c1} sh -c 'nc.openbsd -u -l 5533 > /tmp/gotu'")
        self.await_listening(h1, c1, 5533, udp=True)
        self.check(h2, "echo 'Hello, world.' | nc -u 10.0.1.1 5533",
                   f"docker exec {c2} sh -c \"echo 'Hello, world.' | nc.openbsd -u -w1 "
                   f"10.0.1.1 5533\" && docker -H {h1.docker_host} exec {c1} "
                   "grep -q 'Hello, world.' /tmp/gotu")
        self.say("A second application, 10.0.2.0/24, isolated from the first")
        d1 = self.run(h1, "weave run 10.0.2.1/24 -t -i busybox")
        self.run(h2, "weave run 10.0.2.2/24 -t -i busybox")
        self.check(h1, "10.0.2.1 -> 10.0.2.2", f"docker exec {d1} ping -c1 -W1 10.0.2.2")
        self.check(h1, "10.0.2.1 -> 10.0.1.1", f"docker exec {d1} ping -c1 -W1 10.0.1.1", False)
        self.check(h1, "10.0.2.1 -> 10.0.1.2", f"docker exec {d1} ping -c1 -W1 10.0.1.2", False)
        self.say("Attach a container started by plain docker, then detach it")
        x = self.run(h1, "docker run -d -t -i busybox")
        self.run(h1, f"weave attach 10.0.1.3/24 {x}")
        self.check(h2, "host2's container reaches the attached one",
                   f"docker exec {c2} ping -c1 -W1 10.0.1.3")
        self.run(h1, f"weave detach 10.0.1.3/24 {x}")
        self.check(h2, "after detach", f"docker exec {c2} ping -c1 -W1 10.0.1.3", False)
        self.say("Expose the application network to host2 itself")
        self.run(h2, "weave expose 10.0.1.102/24")
        self.check(h2, "host2 -> its own container", "ping -c1 -W1 10.0.1.2")
        self.check(h2, "host2 -> the container on host1", "ping -c1 -W1 10.0.1.1")
        self.say("Partial connectivity: host3 knows only host2, and cannot reach host1 at all")
        self.lab.cut(h1, h3)
        self.run(h3, f"weave launch 10.0.0.3/16 {h2.ip}")
        c3 = self.run(h3, "weave run 10.0.1.4/24 -t -i busybox")
        self.check(h3, "host3's container -> host1's, routed through host2",
                   f"docker exec {c3} ping -c1 -W1 10.0.1.1")
        self.run(h1, "weave status", show=True)
        self.run(h1, "weave status connections", show=True)
        self.say("Stop the router on host1: local traffic continues, cross-host resumes on launch")
        local = self.run(h1, "weave run 10.0.1.5/24 -t -i busybox")
        self.run(h1, "weave ps", show=True)
        self.run(h1, "weave stop")
        self.check(h1, "local: 10.0.1.1 -> 10.0.1.5 on the same host, router stopped",
                   f"docker exec {c1} ping -c1 -W1 10.0.1.5")
        self.check(h2, "cross-host while host1's router is stopped",
                   f"docker exec {c2} ping -c1 -W1 10.0.1.5", False)
        self.run(h1, "weave launch 10.0.0.1/16")
        self.check(h2, "host2's container -> host1's second container",
                   f"docker exec {c2} ping -c1 -W1 10.0.1.5")
        self.run(h1, f"docker rm -f {local}")
        self.check(h2, "host2's container -> host1's again, no container restarted",
                   f"docker exec {c2} ping -c1 -W1 10.0.1.1")
        self.lab.heal(h1, h3)
        self.say("Reset host3: every trace of weave gone")
        self.run(h3, "weave reset")
        self.check(h3, "no weave bridge left", "ip link show weave", False)


def page_address(lab: Lab, host: Host) -> str:
    """Where ``host``'s topology page is, and how to reach it from outside its namespace."""
    url = f"http://{STATUS_ADDR}/"
    return "\n".join([
        f"    {host.name}'s live topology page: {url} (in its network namespace {host.ns})",
        f"    open it: nsenter --net=/var/run/netns/{host.ns} chromium --no-sandbox "
        f"--user-data-dir=$(mktemp -d) {url}",
        f"    or: weave-lab exec --prefix {lab.prefix} {host.name} -- curl -s {url}metrics",
    ])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="weave-lab demo", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="show every command's output")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--router", choices=("container", "process"), default="container",
                   help="container (default): `weave launch` starts the router image, built "
                   "offline (or cached) and loaded into every host; process: host processes")
    a = p.parse_args(argv)
    archive = None
    if a.router == "container":
        print("building the router image (cached after the first time) ...", flush=True)
        archive = weave_image.build_offline().archive
    lab = Lab(3, prefix=unique_prefix("wd"), router_image=archive)
    print(f"building a lab of 3 hosts ({lab.base_dir}), the router as a {a.router} ...",
          flush=True)
    demo = Demo(lab, a.verbose)
    try:
        lab.up()
        demo.walkthrough()
    finally:
        if a.keep:
            print(f"lab kept: weave-lab exec --prefix {lab.prefix} host1 -- weave status")
            if lab.hosts:
                print(page_address(lab, lab.hosts[0]))
        else:
            for h in lab.hosts:
                with contextlib.suppress(Exception):
                    h.run(["weave", "reset"], check=False, timeout=60)
            lab.down()
    if demo.failures:
        print(f"\n{len(demo.failures)} step(s) did not behave as the README says:")
        for f in demo.failures:
            print(f"  - {f}")
        return 1
    print("\nall steps behaved as the README says")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
