"""A root filesystem made from Debian packages, for the router image's offline base.

No image registry is reachable from the lab, so the base the Dockerfile builds on is assembled
here from the host's Debian mirror: the Depends/Pre-Depends closure of a few packages (python3,
iproute2, iptables, conntrack, dash) is downloaded with `apt-get download` and unpacked with
`dpkg-deb -x`. No maintainer script runs, which is why packages needed only by maintainer
scripts (dpkg, debconf, perl...) are left out of the closure, and why what those scripts would
have made (the iptables alternatives, /etc/passwd) is made here. Docs, man pages and locales are
pruned, and the standard library is byte-compiled once here rather than at every container start.

The tarball is cached under a key derived from the exact package versions, so it is rebuilt only
when the mirror moves; the downloaded .debs are kept too.
"""

from __future__ import annotations

import compileall
import contextlib
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from weavenet.lab.errors import LabError

# What the router runs: the interpreter and its full standard library, the iproute2/iptables/
# conntrack tools, /bin/sh, /etc/protocols and /etc/services, and libstdc++ (manylinux wheels
# such as pyzmq's link to the system's).
ROOTS = (
    "python3-minimal",
    "libpython3.11-stdlib",
    "iproute2",
    "iptables",
    "conntrack",
    "dash",
    "netbase",
    "libstdc++6",
)
# Needed only by maintainer scripts (which never run here) or by tools the router never calls.
EXCLUDE = frozenset({
    "debconf", "debconf-2.0", "cdebconf", "dpkg", "tar", "install-info", "debianutils",
    "perl", "perl-base", "perl-modules-5.36", "libperl5.36",
    "mailcap", "mime-support", "readline-common", "libcap2-bin",
})
PRUNE = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/share/bug", "usr/share/bash-completion", "usr/share/zsh", "usr/share/gcc",
    "usr/share/gdb", "usr/share/python3/debian_defaults", "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/pydoc_data", "usr/lib/python3.11/lib2to3", "usr/lib/python3.11/test",
    # glibc's iconv charset modules: nothing here calls iconv.
    "usr/lib/x86_64-linux-gnu/gconv",
)
# What iptables' postinst would point /etc/alternatives at: the nf_tables backend, Debian's
# default and the host's.
ALTERNATIVES = {
    f"usr/sbin/{name}{suffix}": f"{name}-nft{suffix}"
    for name in ("iptables", "ip6tables")
    for suffix in ("", "-save", "-restore")
}
FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
}
PYTHON_STDLIB = "usr/lib/python3.11"
DEBS_DIR = "debs"
APT_LISTS = Path("/var/lib/apt/lists")


@dataclass(frozen=True)
class Package:
    name: str
    version: str

    @property
    def line(self) -> str:
        return f"{self.name}={self.version}"


def parse_depends(text: str) -> dict[str, list[list[str]]]:
    """`apt-cache depends` output as {package: [alternatives group, ...]}.

    Each group is the list of names that satisfy one dependency; a virtual package contributes
    its own name (in angle brackets in the output) followed by its providers.
    """
    result: dict[str, list[list[str]]] = {}
    groups: list[list[str]] = []
    open_group = False  # the previous dependency line ended with "|": this one continues it
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            groups = result.setdefault(line.strip(), [])
            open_group = False
            continue
        if line.startswith("    "):  # a provider of the virtual package just named
            if groups:
                groups[-1].append(line.strip())
            continue
        stripped = line.strip()
        alternative = stripped.startswith("|")
        kind, _, name = stripped.lstrip("|").partition(":")
        if kind not in ("Depends", "PreDepends"):
            open_group = False
            continue
        name = name.strip().strip("<>")
        if open_group and groups:
            groups[-1].append(name)
        else:
            groups.append([name])
        open_group = alternative
    return result


def choose(groups: Iterable[list[str]], chosen: set[str], exclude: frozenset[str],
           known: set[str]) -> list[str]:
    """The packages to add (and mark chosen) so each group is satisfied: none for a group a
    chosen package already satisfies or whose every alternative is excluded, else its first
    real (known) alternative that is not excluded."""
    wanted = []
    for group in groups:
        if any(n in chosen for n in group):
            continue
        real = [n for n in group if n in known or n in exclude]
        usable = [n for n in real if n not in exclude]
        if real and not usable:
            continue
        if not usable:
            raise LabError(f"cannot satisfy dependency {' | '.join(group)}")
        wanted.append(usable[0])
        chosen.add(usable[0])
    return wanted


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=600)
    except FileNotFoundError as e:
        raise LabError(f"{argv[0]} not found: the offline base needs Debian's apt and dpkg") from e
    if out.returncode != 0:
        tail = " | ".join(out.stderr.strip().splitlines()[-3:])
        raise LabError(f"{' '.join(argv[:2])} failed: {tail}")
    return out.stdout


def _versions(names: Iterable[str]) -> dict[str, str]:
    """Candidate version of each name that is a real package; virtual names are absent."""
    names = sorted(set(names))
    if not names:
        return {}
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", *names],
                         capture_output=True, text=True, timeout=120).stdout
    versions: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("Package: "):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Version: ") and name:
            versions.setdefault(name, line.split(":", 1)[1].strip())
    return versions


def resolve(roots: Iterable[str] = ROOTS, exclude: frozenset[str] = EXCLUDE) -> list[Package]:
    """The closure of roots over Depends and Pre-Depends, minus exclude, with the versions
    `apt-get download` would fetch."""
    chosen = set(roots)
    todo = sorted(chosen)
    known: dict[str, str] = {}
    while todo:
        deps = parse_depends(_run(["apt-cache", "depends", "--no-recommends", "--no-suggests",
                                   "--no-conflicts", "--no-breaks", "--no-replaces",
                                   "--no-enhances", *todo]))
        names = {n for groups in deps.values() for g in groups for n in g} | set(todo)
        known.update(_versions(names - set(known)))
        missing = [n for n in todo if n not in known]
        if missing:
            raise LabError(f"no such Debian package(s): {', '.join(missing)} "
                           "(run apt-get update?)")
        todo = []
        for name in sorted(deps):
            todo += choose(deps[name], chosen, exclude, set(known))
    return [Package(n, known[n]) for n in sorted(chosen)]


def cache_key(packages: Iterable[Package]) -> str:
    """Names the rootfs built from exactly these package versions (and this recipe)."""
    recipe = "\n".join([*sorted(p.line for p in packages), *PRUNE, *sorted(ALTERNATIVES),
                        *sorted(FILES.values())])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _download(packages: list[Package], debs: Path) -> list[Path]:
    debs.mkdir(parents=True, exist_ok=True)

    def find(p: Package) -> Path | None:
        version = p.version.replace(":", "%3a")
        hits = sorted(debs.glob(f"{p.name}_{version}_*.deb"))
        return hits[0] if hits else None

    missing = [p for p in packages if find(p) is None]
    if missing:
        _run(["apt-get", "download", "-q", *(p.line for p in missing)], cwd=debs)
    files = []
    for p in packages:
        path = find(p)
        if path is None:
            raise LabError(f"apt-get download did not produce {p.line}")
        files.append(path)
    return files


def _prune(root: Path) -> None:
    for rel in PRUNE:
        shutil.rmtree(root / rel, ignore_errors=True)
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _finish(root: Path) -> None:
    for link, target in ALTERNATIVES.items():
        path = root / link
        if not (root / link).parent.joinpath(target).exists():
            raise LabError(f"iptables backend {target} missing from the rootfs")
        path.unlink(missing_ok=True)
        path.symlink_to(target)
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, mode in (("tmp", 0o1777), ("root", 0o700), ("proc", 0o755), ("sys", 0o755),
                      ("dev", 0o755), ("run", 0o755), ("var/tmp", 0o1777)):
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel).chmod(mode)
    # The loader's cache, so libraries are found wherever /etc/ld.so.conf.d says.
    subprocess.run(["ldconfig", "-r", str(root)], capture_output=True, timeout=60)
    # Byte-compile the standard library (3.11's magic number is the host's, whatever the
    # micro version); recorded paths are the image's, not this staging directory's.
    stdlib = root / PYTHON_STDLIB
    # A source that fails to compile (none should) just stays uncompiled: not worth failing.
    compileall.compile_dir(stdlib, ddir=f"/{PYTHON_STDLIB}", quiet=2, workers=1)


def lists_key(lists: Path = APT_LISTS) -> str:
    """Changes whenever `apt-get update` brings new package lists (or the roots change)."""
    h = hashlib.sha256("\n".join([*ROOTS, *sorted(EXCLUDE)]).encode())
    for f in sorted(lists.glob("*_Packages*")):
        st = f.stat()
        h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def resolve_cached(cache: Path) -> list[Package]:
    """resolve(), remembered until the package lists change (it takes seconds)."""
    memo = cache / f"closure-{lists_key()}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return [Package(p["name"], p["version"]) for p in json.loads(memo.read_text())]
    packages = resolve()
    cache.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps([{"name": p.name, "version": p.version} for p in packages]))
    return packages


def build(cache: Path) -> tuple[Path, list[Package]]:
    """The rootfs tarball for the current mirror (built and cached unless already there), and
    the packages it holds."""
    packages = resolve_cached(cache)
    dest = cache / f"rootfs-{cache_key(packages)}.tar"
    if dest.exists():
        return dest, packages
    debs = _download(packages, cache / DEBS_DIR)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".rootfs-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(root)])
        _prune(root)
        _finish(root)
        part = Path(tmp) / dest.name
        _run(["tar", "--numeric-owner", "--sort=name", "-C", str(root), "-cf", str(part), "."])
        part.rename(dest)
    # Rootfs tarballs of older mirrors: keep the previous one, drop the rest.
    for old in sorted(cache.glob("rootfs-*.tar"), key=lambda f: f.stat().st_mtime)[:-2]:
        old.unlink(missing_ok=True)
    return dest, packages
