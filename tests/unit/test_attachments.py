"""netconf's record of attached containers, with a fake namespace check instead of /proc."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from weavenet.host.attachments import FILE_NAME, Attachment, Attachments


def attachment(key: str, netns: str, ino: int | None, *cidrs: str) -> Attachment:
    return Attachment(key=key, label=f"label-{key}", container_id=key, pid=42, netns=netns,
                      ino=ino, mac="02:00:00:00:00:01", host_ifname="vethwepl42",
                      cidrs=tuple(cidrs))


class Namespaces:
    """netns path -> inode; a missing path is a namespace that is gone."""

    def __init__(self, **inodes: int) -> None:
        self.inodes = {f"/ns/{k}": v for k, v in inodes.items()}

    def __call__(self, path: str) -> int | None:
        return self.inodes.get(path)


def test_the_file_keeps_the_format_netconf_has_always_written(tmp_path: Path):
    path = tmp_path / FILE_NAME
    record = Attachments(path, inode=Namespaces(a=7))
    record.put(attachment("a", "/ns/a", 7, "10.0.1.1/24"))
    record.save()
    assert json.loads(path.read_text()) == {"a": {
        "key": "a", "label": "label-a", "container_id": "a", "pid": 42, "netns": "/ns/a",
        "ino": 7, "mac": "02:00:00:00:00:01", "host_ifname": "vethwepl42",
        "cidrs": ["10.0.1.1/24"]}}
    assert not path.with_suffix(".tmp").exists()
    again = Attachments.load(path, inode=Namespaces(a=7))
    assert list(again) == list(record)


def test_a_missing_or_corrupt_file_or_entry_is_skipped(tmp_path: Path):
    path = tmp_path / FILE_NAME
    assert len(Attachments.load(path)) == 0
    path.write_text("{not json")
    assert len(Attachments.load(path)) == 0
    path.write_text(json.dumps({
        "good": attachment("good", "/ns/good", 1, "10.0.1.1/24").to_json(),
        "no-netns": {"key": "no-netns", "cidrs": []},
        "odd": [1, 2],
    }))
    assert [a.key for a in Attachments.load(path)] == ["good"]


def test_prune_drops_containers_whose_namespace_is_gone_or_was_reused(tmp_path: Path):
    ns = Namespaces(alive=1, reused=99, unknown=5)
    record = Attachments(tmp_path / FILE_NAME, inode=ns)
    record.put(attachment("alive", "/ns/alive", 1))
    record.put(attachment("gone", "/ns/gone", 2))
    record.put(attachment("reused", "/ns/reused", 3))  # the pid now names another namespace
    record.put(attachment("unknown", "/ns/unknown", None))  # no inode recorded: trust the path
    assert sorted(record.prune()) == ["gone", "reused"]
    assert sorted(a.key for a in record) == ["alive", "unknown"]
    assert record.prune() == []


def test_user_of_finds_the_other_container_with_the_address(tmp_path: Path):
    record = Attachments(tmp_path / FILE_NAME, inode=Namespaces())
    record.put(attachment("a", "/ns/a", 1, "10.0.1.1/24", "10.0.2.1/24"))
    ip = ipaddress.ip_address("10.0.2.1")
    user = record.user_of(ip)
    assert user is not None and user.label == "label-a"
    assert record.user_of(ip, except_key="a") is None  # re-attaching the same container
    assert record.user_of(ipaddress.ip_address("10.0.3.1")) is None


def test_summaries_are_what_weave_ps_shows(tmp_path: Path):
    record = Attachments(tmp_path / FILE_NAME, inode=Namespaces(a=1))
    record.put(attachment("a", "/ns/a", 1, "10.0.1.1/24"))
    record.put(attachment("stopped", "/ns/stopped", 2, "10.0.1.2/24"))  # kept, not shown
    assert record.summaries() == [{"key": "a", "label": "label-a", "container_id": "a",
                                   "mac": "02:00:00:00:00:01", "cidrs": ["10.0.1.1/24"]}]
    record.remove("a")
    record.remove("a")  # removing twice is fine
    assert record.summaries() == [] and record.get("a") is None


def test_prune_keeps_what_it_is_told_to_keep(tmp_path: Path):
    record = Attachments(tmp_path / FILE_NAME, inode=Namespaces())
    record.put(attachment("docker", "/ns/docker", 1, "10.0.1.1/24"))
    record.put(attachment("netns", "/ns/netns", 2, "10.0.1.2/24"))
    assert record.prune(keep=lambda a: a.key == "docker") == ["netns"]
    assert record.get("docker") is not None  # its address stays reserved
    assert record.user_of(ipaddress.ip_address("10.0.1.1")) is not None
