"""One decoder for every subscriber of the supervisor's events."""

from weavenet.runtime import bus
from weavenet.runtime.events import event_data


def envelope(data: object) -> bytes:
    return bus.encode(bus.request("event", {"topic": "paths", "data": data}))


def test_an_event_is_its_topic_and_data_map() -> None:
    assert event_data([b"paths", envelope({"paths": {}})]) == ("paths", {"paths": {}})


def test_malformed_events_are_none() -> None:
    for parts in ([b"paths"], [b"paths", b"garbage"], [b"paths", envelope("not a map")],
                  [b"\xff", envelope({})], [b"a", b"b", b"c"]):
        assert event_data(parts) is None, parts
