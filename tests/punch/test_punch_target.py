"""Where the punch may send (``plexus.punch.target``): pure checks, no packet is sent."""

from __future__ import annotations

import pytest

from plexus.punch.target import unusable_target

LAB = ("198.18.12.2", 40000)  # ours in the lab: a private (non-global) address
PUBLIC = ("9.9.9.9", 40000)  # ours on the internet (a global address; nothing is sent to it)


@pytest.mark.parametrize(("peer", "ours", "reason"), [
    (("127.0.0.1", 5000), PUBLIC, "loopback address, but ours (9.9.9.9) is global"),
    (("127.0.0.1", 5000), LAB, "loopback address"),
    (("198.18.11.2", 5000), PUBLIC, "private address, but ours (9.9.9.9) is global"),
    (("0.0.0.0", 5000), LAB, "unspecified"),
    (("224.0.0.1", 5000), LAB, "multicast"),
    (("255.255.255.255", 5000), LAB, "reserved"),
    (("198.18.12.255", 5000), LAB, "broadcast"),
    (("169.254.1.1", 5000), LAB, "link-local"),
    (("ff02::1", 5000), LAB, "multicast"),
    (("198.18.12.2", 40000), LAB, "is our own"),
    (("198.18.11.2", 0), LAB, "port out of range"),
])
def test_unusable_targets_are_named(peer: tuple[str, int], ours: tuple[str, int], reason: str) -> None:
    found = unusable_target(peer, ours, ("198.18.2.2", 40000))
    assert found is not None and reason in found and found.startswith("endpoint ")


@pytest.mark.parametrize(("peer", "ours"), [
    (("198.18.11.2", 41000), LAB),  # the lab: both sides private
    (("9.9.9.10", 41000), PUBLIC),  # the internet: both global
    (("9.9.9.9", 41000), PUBLIC),  # behind the same NAT as we are, another port (hairpin)
    (("127.0.0.1", 41000), ("127.0.0.1", 40000)),  # a test on loopback
])
def test_usable_targets_pass(peer: tuple[str, int], ours: tuple[str, int]) -> None:
    assert unusable_target(peer, ours, ours) is None
