"""Where the punch may send: the peer's endpoint from an authenticated offer, checked before the first packet.

An authenticated peer could otherwise aim our packets anywhere: at our own ports, at hosts on our LAN, at a
broadcast or multicast group. The endpoint must be a unicast address of the same reach as our own public one
(a global address when ours is global; a private one only when ours is private too, as behind a STUN server on
a LAN or in the lab; loopback only when we are on loopback ourselves), and not one of our own endpoints.
"""

from __future__ import annotations

import ipaddress

Address = tuple[str, int]


def _reach(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_loopback:
        return "loopback"
    return "global" if address.is_global else "private"


def unusable_target(peer: Address, ours: Address, inner: Address) -> str | None:
    """Why ``peer`` must not be punched toward, or None. ``ours``: our public endpoint; ``inner``: our local one."""
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return f"{peer[0]!r} is not an IP address"
    where = f"endpoint {peer[0]}:{peer[1]}"
    if not 0 < peer[1] <= 65535:
        return f"{where}: port out of range"
    for kind, flag in (("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
                       ("link-local", address.is_link_local), ("reserved", address.is_reserved)):
        if flag:
            return f"{where} is a {kind} address, not a host"
    if isinstance(address, ipaddress.IPv4Address) and address.packed[-1] == 255 and not address.is_global:
        return f"{where} looks like a broadcast address"
    if tuple(peer) in (tuple(ours), tuple(inner)):
        return f"{where} is our own"
    try:
        our_reach = _reach(ipaddress.ip_address(ours[0]))
    except ValueError:
        our_reach = "global"
    if _reach(address) != our_reach and not (our_reach == "loopback" and _reach(address) != "global"):
        return f"{where} is a {_reach(address)} address, but ours ({ours[0]}) is {our_reach}: not reachable the " \
               "way we are"
    return None
