"""What a recorded attachment needs when Docker reports on its container (dockerwatch.plan),
and the event pipe netconf reads, fed by a fake Docker."""

from __future__ import annotations

import select
from typing import Any

from weavenet.host.attachments import Attachment
from weavenet.host.dockerwatch import ContainerState, DockerEvents, Forget, Reattach, plan

A = Attachment(key="c1", label="web", container_id="c1", pid=100, netns="/proc/100/ns/net",
               ino=7, mac="02:00:00:00:00:01", host_ifname="vethwepl7", cidrs=("10.0.1.1/24",))


def inodes(**by_pid: int):
    """/proc/PID/ns/net -> inode, for the pids given as pPID=inode."""
    table = {f"/proc/{k[1:]}/ns/net": v for k, v in by_pid.items()}
    return table.get


def test_a_removed_container_is_forgotten():
    assert plan(A, None, inodes()) == Forget("c1")


def test_a_stopped_container_keeps_its_record():
    assert plan(A, ContainerState(running=False, pid=0), inodes()) is None


def test_a_container_in_the_namespace_attached_needs_nothing():
    assert plan(A, ContainerState(True, 100), inodes(p100=7)) is None


def test_a_restarted_container_is_reattached_in_its_new_namespace():
    assert plan(A, ContainerState(True, 200), inodes(p200=9)) == \
        Reattach("c1", "/proc/200/ns/net", 200)
    # the same pid again, but another namespace: a reused pid is not the same container
    assert plan(A, ContainerState(True, 100), inodes(p100=8)) == \
        Reattach("c1", "/proc/100/ns/net", 100)
    # the kernel gave the new namespace the old one's inode number (it does, at once)
    assert plan(A, ContainerState(True, 200), inodes(p200=7)) == \
        Reattach("c1", "/proc/200/ns/net", 200)


class FakeDocker:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events

    def events(self, decode: bool, filters: dict[str, Any]):
        assert decode and filters["type"] == "container"
        return iter(self._events)


def read_until(watch: DockerEvents, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < n:
        assert select.select([watch.fd], [], [], 5)[0], got
        got += watch.read()
    return got


def test_the_stream_becomes_sync_then_events_then_lost_and_retries():
    attempts = []

    def connect():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("no Docker\nsecond line")
        return FakeDocker([{"Type": "container", "Action": "start", "Actor": {"ID": "c1"}},
                           {"status": "destroy", "id": "c2"}, {"Action": "start"}])

    watch = DockerEvents(connect, retry=0.01)
    watch.start()
    got = read_until(watch, 5)
    assert got[:5] == [{"action": "lost", "reason": "no Docker"}, {"action": "sync"},
                       {"action": "start", "id": "c1"}, {"action": "destroy", "id": "c2"},
                       {"action": "lost", "reason": "the event stream ended"}]
