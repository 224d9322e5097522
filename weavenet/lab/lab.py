"""The lab: N simulated hosts on one machine, their LAN, their dockerds, and faults between them.

Everything the lab creates is written to `<base>/lab.json` *before* it is created, so down()
can undo a partial up() and a later process (`weave-lab down`) can undo a lab it never saw
being built. down() does not trust that record alone: it also removes namespaces named after
the prefix and kills processes living in the lab's namespaces or running its dockerds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from weavenet.lab import dockerd, image, procs, underlay
from weavenet.lab import router_image as weave_image
from weavenet.lab.errors import LabError
from weavenet.lab.host import Host

LABS_ROOT = Path("/run/wl")
STATE_FILE = "lab.json"
STATE_VERSION = 1
UNDERLAY_NET = "198.18.0"  # host i is UNDERLAY_NET.i/24
UNDERLAY_PREFIXLEN = 24
NAT_INSIDE_NET = "198.19.{index}.0"  # behind NAT, host i is 198.19.i.2 and its router 198.19.i.1
MAX_HOSTS = 250
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
DOCKERD_STOP_GRACE = 20.0  # > SHUTDOWN_TIMEOUT plus dockerd's and containerd's own shutdown

HostRef = Host | int | str


class Lab:
    """N hosts `host1`..`hostN` in namespaces `<prefix>-h<i>` on a LAN `<prefix>-lan`."""

    def __init__(self, n_hosts: int, prefix: str = "wl", docker: bool = True,
                 base_dir: Path | None = None, nat: Iterable[int] = (),
                 router_image: Path | None = None):
        if not PREFIX_RE.match(prefix):
            raise LabError(f"bad prefix {prefix!r}: 1-12 chars, a-z then a-z0-9")
        if not 1 <= n_hosts <= MAX_HOSTS:
            raise LabError(f"number of hosts must be 1..{MAX_HOSTS}, not {n_hosts}")
        self.n_hosts = n_hosts
        self.nat = sorted(set(nat))
        if any(not 1 <= i <= n_hosts for i in self.nat):
            raise LabError(f"NAT hosts must be among 1..{n_hosts}, not {self.nat}")
        self.prefix = prefix
        self.docker = docker
        # A `docker save` archive of the router image (weave_image.build_offline makes one) to
        # load into every host's dockerd; None loads nothing.
        self.router_image = Path(router_image) if router_image is not None else None
        if self.router_image is not None and not docker:
            raise LabError("a router image needs the hosts' dockerds (docker=True)")
        self.base_dir = Path(base_dir) if base_dir is not None else LABS_ROOT / prefix
        self.lan_ns = f"{prefix}-lan"
        self.hosts: list[Host] = [self._make_host(i) for i in range(1, n_hosts + 1)]
        self.status = "down"
        self._procs: list[dict[str, Any]] = []  # {"pid", "start", "what"}
        self._popens: list[subprocess.Popen[Any]] = []
        self._faults: list[list[Any]] = []
        for host in self.hosts:
            dockerd.check_socket_lengths(host.docker_paths)

    def _make_host(self, i: int) -> Host:
        lan_ip = f"{UNDERLAY_NET}.{i}"
        if i not in self.nat:
            return Host(i, f"{self.prefix}-h{i}", lan_ip, self.base_dir / f"h{i}", self.docker,
                        self._track, router=self.router_mode)
        private = NAT_INSIDE_NET.format(index=i).rsplit(".", 1)[0] + ".2"
        return Host(i, f"{self.prefix}-h{i}", private, self.base_dir / f"h{i}", self.docker,
                    self._track, nat=(f"{self.prefix}-r{i}", lan_ip), router=self.router_mode)

    @property
    def router_mode(self) -> str:
        """How `weave launch` runs the router on the hosts: in its container where the image
        was loaded, else as host processes (there is no image to run)."""
        return "container" if self.router_image is not None else "process"

    # --- state ------------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.base_dir / STATE_FILE

    def _state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "prefix": self.prefix,
            "n_hosts": self.n_hosts,
            "nat": self.nat,
            "docker": self.docker,
            "router_image": str(self.router_image) if self.router_image else None,
            "base_dir": str(self.base_dir),
            "lan_ns": self.lan_ns,
            "status": self.status,
            "hosts": [
                {"name": h.name, "ns": h.ns, "ip": h.ip, "dir": str(h.dir)} for h in self.hosts
            ],
            "procs": self._procs,
            "faults": self._faults,
        }

    def _save(self) -> None:
        for attempt in range(3):
            try:
                self.base_dir.mkdir(parents=True, exist_ok=True)
                break
            except FileNotFoundError:
                # Another lab's down() removed the empty LABS_ROOT between our two mkdirs.
                if attempt == 2:
                    raise
        tmp = self.state_file.with_name(STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self._state(), indent=1) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, prefix: str = "wl", base_dir: Path | None = None) -> Lab:
        """The lab recorded under base_dir (default /run/wl/<prefix>) by another process."""
        base = Path(base_dir) if base_dir is not None else LABS_ROOT / prefix
        try:
            data = json.loads((base / STATE_FILE).read_text())
        except FileNotFoundError:
            raise LabError(f"no lab '{prefix}' (no {base / STATE_FILE})") from None
        except (OSError, ValueError) as e:
            raise LabError(f"unreadable lab state {base / STATE_FILE}: {e}") from e
        try:
            lab = cls(int(data["n_hosts"]), data["prefix"], bool(data["docker"]), base,
                      nat=[int(i) for i in data.get("nat", [])],
                      router_image=data.get("router_image"))
            lab.status = str(data.get("status", "unknown"))
            lab._procs = [dict(p) for p in data.get("procs", [])]
            lab._faults = [list(f) for f in data.get("faults", [])]
        except (KeyError, TypeError, ValueError) as e:
            raise LabError(f"malformed lab state {base / STATE_FILE}: {e}") from e
        return lab

    @classmethod
    def find_all(cls, root: Path = LABS_ROOT) -> list[Lab]:
        labs = []
        for state in sorted(root.glob(f"*/{STATE_FILE}")):
            with contextlib.suppress(LabError):
                labs.append(cls.load(state.parent.name, state.parent))
        return labs

    def _track(self, proc: subprocess.Popen[Any], what: str) -> None:
        self._popens.append(proc)
        ref = procs.ref(proc.pid)
        if ref is not None:
            self._procs.append({**ref.to_json(), "what": what})
            self._save()

    def _refs(self, what_prefix: str = "") -> list[procs.ProcRef]:
        return [
            procs.ProcRef.from_json(p) for p in self._procs if p["what"].startswith(what_prefix)
        ]

    # --- lifecycle --------------------------------------------------------------------------

    def host(self, which: HostRef) -> Host:
        """A host by Host, number (1-based, as in its name), "3" or "host3"."""
        if isinstance(which, Host):
            return which
        text = str(which)
        num = text[4:] if text.startswith("host") else text
        if num.isdigit() and 1 <= int(num) <= self.n_hosts:
            return self.hosts[int(num) - 1]
        raise LabError(
            f"no host {which!r} in lab '{self.prefix}' (hosts are host1..host{self.n_hosts})"
        )

    def up(self) -> Lab:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, dockerd)")
        if self.state_file.exists():
            raise LabError(f"lab '{self.prefix}' is already up ({self.state_file}); "
                           f"run: weave-lab down --prefix {self.prefix}")
        if self.base_dir.exists() and any(self.base_dir.iterdir()):
            raise LabError(f"lab directory {self.base_dir} exists and is not empty")
        for name in [self.lan_ns, *(h.ns for h in self.hosts),
                     *(h.router_ns for h in self.hosts if h.router_ns)]:
            if underlay.exists(name):
                raise LabError(f"network namespace {name} exists; "
                               f"run: weave-lab down --prefix {self.prefix}")
        if self.docker and shutil.which("dockerd") is None:
            raise LabError("dockerd not found (install docker.io) or use docker=False")
        self.status = "starting"
        self._save()
        try:
            self._build_underlay()
            if self.docker:
                self._start_dockerds()
        except BaseException:
            # Undo whatever was built, then report the original failure.
            with contextlib.suppress(Exception):
                self.down()
            raise
        self.status = "up"
        self._save()
        return self

    def _build_underlay(self) -> None:
        underlay.create(self.lan_ns)
        underlay.build_lan(self.lan_ns)
        for host in self.hosts:
            underlay.create(host.ns)
            if host.router_ns is None:
                underlay.attach(self.lan_ns, underlay.Port(host.ns, f"h{host.index}", host.ip,
                                                     UNDERLAY_PREFIXLEN))
            else:
                underlay.create(host.router_ns)
                underlay.attach(self.lan_ns, underlay.Port(host.router_ns, f"h{host.index}",
                                                     host.lan_ip, UNDERLAY_PREFIXLEN))
                underlay.build_nat(host.router_ns, host.ns, NAT_INSIDE_NET.format(index=host.index),
                                   f"{UNDERLAY_NET}.0/{UNDERLAY_PREFIXLEN}")
            host.run_dir.mkdir(parents=True, exist_ok=True)
            host.state_dir.mkdir(parents=True, exist_ok=True)

    def _start_dockerds(self) -> None:
        rootfs = image.build_rootfs(self.base_dir / "busybox-rootfs.tar")
        started = []
        # Start all, then wait for all: the daemons initialise in parallel.
        for host in self.hosts:
            proc = dockerd.start(host.ns, host.docker_paths, host.ns)
            self._track(proc, f"dockerd {host.name}")
            started.append((host, proc))
        for host, proc in started:
            dockerd.wait_ready(proc, host.docker_paths, host.name)
            cpid = dockerd.containerd_pid(host.docker_paths)
            ref = procs.ref(cpid) if cpid else None
            if ref is not None:
                self._procs.append({**ref.to_json(), "what": f"containerd {host.name}"})
            image.import_image(host.docker(), rootfs)
        if self.router_image is not None:
            # In parallel: each load is seconds of dockerd unpacking layers (vfs copies them).
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(self._load_router_image, self.hosts))
        self._save()

    def _load_router_image(self, host: Host) -> None:
        assert self.router_image is not None
        with contextlib.closing(dockerd.connect(host.docker_paths,
                                                weave_image.BUILD_TIMEOUT)) as client:
            weave_image.load(client, self.router_image)

    def down(self) -> None:
        """Stop everything the lab started and remove every trace. Idempotent; raises LabError
        after finishing if something could not be removed."""
        for host in self.hosts:
            with contextlib.suppress(Exception):
                host.close()
        problems: list[str] = []
        # Containers die first, by SIGKILL: dockerd would give each one 10 s to heed a SIGTERM
        # that busybox `sh` as PID 1 ignores.
        shims = procs.docker_family_under(self.base_dir, procs.SHIMS)
        procs.signal_all(procs.refs(procs.descendants(shims)), signal.SIGKILL)
        # Then dockerd, gently: it cleans up after its containers and stops its containerd.
        dockerds = [r for r in self._refs("dockerd") if procs.alive(r)]
        procs.signal_all(dockerds, signal.SIGTERM)
        left = procs.wait_gone(dockerds, DOCKERD_STOP_GRACE)
        # Then everything else that is ours: tracked processes, anything living in our
        # namespaces, and dockerd's family (shims re-parent to init and outlive dockerd).
        ns_files = [underlay.ns_file(n) for n in self._namespaces()]
        pids = {r.pid for r in self._refs()} | procs.in_netns(ns_files)
        pids |= procs.docker_family_under(self.base_dir)
        pids |= procs.descendants(pids)
        survivors = procs.terminate([*left, *procs.refs(pids)], grace=3.0)
        if survivors:
            problems.append(f"processes survived SIGKILL: {[s.pid for s in survivors]}")
        for proc in self._popens:
            proc.poll()
        self._popens.clear()
        _unmount_under(self.base_dir)
        for name in self._namespaces():
            try:
                underlay.remove(name)
            except LabError as e:
                problems.append(str(e))
        problems += self._remove_dirs()
        if self.base_dir.parent == LABS_ROOT:
            with contextlib.suppress(OSError):
                LABS_ROOT.rmdir()  # only succeeds once no other lab is left
        self._procs, self._faults, self.status = [], [], "down"
        if problems:
            raise LabError(f"lab '{self.prefix}' down incomplete: " + "; ".join(problems))

    def _remove_dirs(self) -> list[str]:
        """Remove what the lab put in base_dir, then base_dir if that left it empty: never a
        recursive delete of a directory the lab did not fill (base_dir may be caller-given)."""
        if not self.base_dir.is_dir():
            return []
        ours = re.compile(r"^(h\d+|lab\.json(\.tmp)?|busybox-rootfs\.tar(\.tmp)?)$")
        for entry in self.base_dir.iterdir():
            if ours.match(entry.name):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        try:
            self.base_dir.rmdir()
        except OSError as e:
            return [f"cannot remove {self.base_dir}: {e.strerror}"]
        return []

    def _namespaces(self) -> list[str]:
        mine = re.compile(rf"^{re.escape(self.prefix)}-(lan|[hrx]\d+)$")
        names = {self.lan_ns, *(h.ns for h in self.hosts),
                 *(h.router_ns for h in self.hosts if h.router_ns)}
        names |= {n for n in underlay.list_names() if mine.match(n)}
        # Hosts before the LAN, so no veth is left dangling in a half-removed LAN.
        return sorted(names, key=lambda n: n == self.lan_ns)

    def __enter__(self) -> Lab:
        if self.status != "up":
            self.up()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.down()

    # --- strangers on the LAN ----------------------------------------------------------------

    def stranger(self, index: int) -> str:
        """A bare namespace ``<prefix>-x<index>`` on the LAN at ``UNDERLAY_NET.<index>``: no
        dockerd, no router, e.g. an attacker on the underlay. Run commands in it with
        ``underlay.nsenter(name, argv)``; ``down()`` removes it and kills what runs there.
        Returns the namespace's name (the same one again if it exists already)."""
        if not self.n_hosts < index < 255:
            raise LabError(f"a stranger's index must be in {self.n_hosts + 1}..254, not {index}")
        name = f"{self.prefix}-x{index}"
        if not underlay.exists(name):
            underlay.create(name)
            underlay.attach(self.lan_ns, underlay.Port(name, f"x{index}",
                                                       f"{UNDERLAY_NET}.{index}",
                                                       UNDERLAY_PREFIXLEN))
        return name

    # --- faults -----------------------------------------------------------------------------

    @property
    def faults(self) -> list[tuple[Any, ...]]:
        return [tuple(f) for f in self._faults]

    def _record(self, fault: list[Any], active: bool) -> None:
        if active and fault not in self._faults:
            self._faults.append(fault)
        elif not active and fault in self._faults:
            self._faults.remove(fault)
        if self.state_file.exists():
            self._save()

    def reboot(self, which: HostRef) -> None:
        """A host's reboot, as far as weave can tell: its dockerd stops (stopping its containers
        as a shutdown does), the kernel state a reboot loses goes (the weave bridge and every
        veth; ``/run``, so the host's run directory), and dockerd starts again, restarting the
        containers whose restart policy says so. The namespace, its underlay address and the
        state directory stay, as a disk does."""
        host = self.host(which)
        host.close()
        dockerds = [r for r in self._refs(f"dockerd {host.name}") if procs.alive(r)]
        procs.signal_all(dockerds, signal.SIGTERM)
        if procs.wait_gone(dockerds, DOCKERD_STOP_GRACE):
            raise LabError(f"dockerd of {host.name} did not stop in {DOCKERD_STOP_GRACE:.0f}s")
        self._procs = [p for p in self._procs if p["what"] != f"dockerd {host.name}"]
        links = host.run(["ip", "-o", "link", "show"]).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if name == "weave" or name.startswith("veth"):
                host.run(["ip", "link", "del", name], check=False)
        shutil.rmtree(host.run_dir, ignore_errors=True)
        host.run_dir.mkdir(parents=True)
        proc = dockerd.start(host.ns, host.docker_paths, host.ns)
        self._track(proc, f"dockerd {host.name}")
        dockerd.wait_ready(proc, host.docker_paths, host.name)

    def cut(self, a: HostRef, b: HostRef) -> None:
        """Drop all underlay traffic between two hosts (both directions, silently)."""
        ha, hb = self._pair(a, b)
        # By the source address each side sees: a NAT host's packets carry its router's.
        underlay.add_drop(ha.ns, ["-s", hb.lan_ip])
        underlay.add_drop(hb.ns, ["-s", ha.lan_ip])
        self._record(["cut", ha.name, hb.name], True)

    def heal(self, a: HostRef, b: HostRef) -> None:
        ha, hb = self._pair(a, b)
        underlay.remove_drop(ha.ns, ["-s", hb.lan_ip])
        underlay.remove_drop(hb.ns, ["-s", ha.lan_ip])
        self._record(["cut", ha.name, hb.name], False)

    def block(self, a: HostRef, b: HostRef, proto: str, port: int) -> None:
        """Drop proto ("tcp"/"udp") to port between two hosts, both ways (say, UDP 6783 between
        two hosts whose TCP still works); other hosts are not affected."""
        ha, hb = self._pair(a, b)
        proto = underlay.tcp_or_udp(proto)
        for here, there in ((ha, hb), (hb, ha)):
            underlay.add_drop(here.ns, ["-s", there.lan_ip, "-p", proto, "--dport", str(int(port))])
        self._record(["block", ha.name, hb.name, proto, int(port)], True)

    def unblock(self, a: HostRef, b: HostRef, proto: str, port: int) -> None:
        ha, hb = self._pair(a, b)
        proto = underlay.tcp_or_udp(proto)
        for here, there in ((ha, hb), (hb, ha)):
            underlay.remove_drop(here.ns,
                                 ["-s", there.lan_ip, "-p", proto, "--dport", str(int(port))])
        self._record(["block", ha.name, hb.name, proto, int(port)], False)

    def firewall(self, host: HostRef, proto: str, port: int) -> None:
        """Drop everything arriving at host for proto ("tcp"/"udp") port."""
        h, proto = self.host(host), underlay.tcp_or_udp(proto)
        underlay.add_drop(h.ns, ["-p", proto, "--dport", str(int(port))])
        self._record(["firewall", h.name, proto, int(port)], True)

    def unfirewall(self, host: HostRef, proto: str, port: int) -> None:
        h, proto = self.host(host), underlay.tcp_or_udp(proto)
        underlay.remove_drop(h.ns, ["-p", proto, "--dport", str(int(port))])
        self._record(["firewall", h.name, proto, int(port)], False)

    def drop_udp_larger_than(self, host: HostRef, size: int) -> None:
        """Drop UDP packets arriving at host whose IP length (header included) exceeds size.
        Unfragmented packets only: fragments of a larger datagram are each judged alone."""
        h = self.host(host)
        if not 28 <= size < 65535:
            raise LabError(f"size must be 28..65534, not {size}")
        self.undrop_udp_larger_than(h)
        underlay.add_drop(h.ns, _udp_length_rule(size))
        self._record(["drop_udp_larger_than", h.name, int(size)], True)

    def undrop_udp_larger_than(self, host: HostRef) -> None:
        h = self.host(host)
        for fault in [f for f in self._faults if f[:2] == ["drop_udp_larger_than", h.name]]:
            underlay.remove_drop(h.ns, _udp_length_rule(int(fault[2])))
            self._record(fault, False)

    def lose(self, host: HostRef, percent: float) -> None:
        """Drop `percent` % of the underlay packets arriving at host, at random (0 undoes it)."""
        h = self.host(host)
        if not 0 <= percent <= 100:
            raise LabError(f"loss must be 0..100 %, not {percent}")
        for fault in [f for f in self._faults if f[:2] == ["loss", h.name]]:
            underlay.remove_drop(h.ns, underlay.loss_rule(float(fault[2])))
            self._record(fault, False)
        if percent > 0:
            underlay.add_drop(h.ns, underlay.loss_rule(percent))
            self._record(["loss", h.name, float(percent)], True)

    def clear_faults(self) -> None:
        """Undo every fault this lab has recorded."""
        undo = {
            "cut": lambda a, b: self.heal(a, b),
            "block": lambda a, b, proto, port: self.unblock(a, b, proto, port),
            "firewall": lambda h, proto, port: self.unfirewall(h, proto, port),
            "drop_udp_larger_than": lambda h, _size: self.undrop_udp_larger_than(h),
            "loss": lambda h, _percent: self.lose(h, 0),
        }
        for kind, *args in list(self._faults):
            undo[kind](*args)

    def _pair(self, a: HostRef, b: HostRef) -> tuple[Host, Host]:
        ha, hb = self.host(a), self.host(b)
        if ha is hb:
            raise LabError(f"cannot cut {ha.name} from itself")
        return (ha, hb) if ha.index < hb.index else (hb, ha)


def unique_prefix(stem: str = "wt") -> str:
    """A prefix no lab on this machine uses: stem plus 4 random hex digits."""
    while True:
        prefix = f"{stem}{secrets.token_hex(2)}"
        if not (LABS_ROOT / prefix).exists() and not underlay.exists(f"{prefix}-lan"):
            return prefix


def _udp_length_rule(size: int) -> list[str]:
    return ["-p", "udp", "-m", "length", "--length", f"{size + 1}:65535"]


def _unmount_under(base: Path) -> None:
    """Lazily unmount anything mounted below base (e.g. container netns bind mounts that a
    killed dockerd left behind), deepest first, so the directory can be removed."""
    prefix = str(base).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in lines:
        point = line.split()[4].encode().decode("unicode_escape")  # octal escapes like \040
        if point.startswith(prefix):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=30)
