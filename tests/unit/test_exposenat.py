"""The NAT rules `weave expose` adds, as data (the e2e tests run them on lab hosts)."""

from weavenet.host.exposenat import TAG, rules


def test_export_is_snat_to_the_exposed_address_and_import_is_masquerade() -> None:
    (t1, c1, into), (t2, c2, out) = rules("10.0.1.102/24")
    assert (t1, c1, t2, c2) == ("nat", "POSTROUTING", "nat", "POSTROUTING")
    # into the network, from outside the subnet: the host's own weave address as source
    assert into[:6] == ["-o", "weave", "!", "-s", "10.0.1.0/24", "-d"]
    assert into[-4:] == ["-j", "SNAT", "--to-source", "10.0.1.102"]
    # out of the network through any other interface: masqueraded
    assert out[:3] == ["!", "-o", "weave"] and out[-2:] == ["-j", "MASQUERADE"]
    assert "10.0.1.0/24" in out


def test_rules_are_tagged_by_address_so_hide_removes_only_its_own() -> None:
    a, b = rules("10.0.1.102/24"), rules("10.0.2.102/24")
    assert all(f"{TAG}:10.0.1.102/24" in spec for _, _, spec in a)
    assert not any(f"{TAG}:10.0.1.102/24" in spec for _, _, spec in b)
