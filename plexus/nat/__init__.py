"""NAT discovery: an RFC 5389 STUN Binding client over the shared UDP port, and RFC 5780 classification.

``discover`` is what ``plexus up`` needs (public endpoint and mapping, through the port that will punch);
``full_report`` adds filtering, port preservation and hairpinning for ``plexus nat``; ``punchable`` turns a
mapping into a verdict a person understands.
"""

from plexus.nat.behaviour import Filtering, NatReport, full_report
from plexus.nat.client import Binding, StunClient
from plexus.nat.mapping import Discovery, Mapping, discover, punchable

__all__ = ["Binding", "Discovery", "Filtering", "Mapping", "NatReport", "StunClient", "discover", "full_report",
           "punchable"]
