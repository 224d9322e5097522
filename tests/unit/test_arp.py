import struct

from weavenet.host.arp import announcement


def test_announcement_is_a_broadcast_arp_request_for_our_own_address():
    mac = bytes.fromhex("02aabbccddee")
    f = announcement(mac, "10.0.1.5")
    assert len(f) == 42
    assert f[:6] == b"\xff" * 6 and f[6:12] == mac and f[12:14] == b"\x08\x06"
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = struct.unpack("!HHBBH6s4s6s4s", f[14:])
    assert (htype, ptype, hlen, plen, op) == (1, 0x0800, 6, 4, 1)
    assert sha == mac and spa == tpa == bytes([10, 0, 1, 5]) and tha == b"\x00" * 6
