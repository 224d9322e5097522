"""Which addresses gossip asks netconf to give kernel flood entries (``kernel_peers``)."""

from weavenet.mesh.fastdp_links import kernel_peers

BEFORE = ("198.18.0.2", "198.18.0.3")


def test_a_restarted_gossip_keeps_the_previous_entries_while_it_re_proves_them() -> None:
    assert kernel_peers({"198.18.0.2"}, BEFORE, set(), in_grace=True) == BEFORE


def test_an_address_proved_then_seen_failing_goes_at_once_even_in_the_grace() -> None:
    # a link cut just after launch must not keep the kernel sending into it
    assert kernel_peers({"198.18.0.2"}, BEFORE, {"198.18.0.3"}, in_grace=True) == ("198.18.0.2",)


def test_after_the_grace_only_what_is_proven_stays() -> None:
    assert kernel_peers({"198.18.0.2"}, BEFORE, set(), in_grace=False) == ("198.18.0.2",)
