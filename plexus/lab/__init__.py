"""The network lab: sites a, b, c behind real NATs, an RFC 5780 STUN server, TURN relays and a mail server, in
Linux network namespaces (``plexus lab up``). ``Lab`` is the API; ``topology`` has the addresses; ``turn`` counts
the long-term relay's allocations."""

from plexus.lab.lab import Lab
from plexus.lab.state import lab_name
from plexus.lab.topology import NAT_KINDS, SITES, NatKind

__all__ = ["NAT_KINDS", "SITES", "Lab", "NatKind", "lab_name"]
