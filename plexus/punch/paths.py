"""Which path two peers take, from both sides' NAT behaviour (each offer carries its sender's mapping and, when
measured, filtering) and their relay settings. The acceptor decides and says so in its accept; the initiator
follows.

Direct, wherever the NATs allow it:

- both easy (no NAT, endpoint-independent mapping, or unknown: one ordinary STUN server could not tell): a
  direct punch;
- one hard (a new public port per destination: symmetric, CGNAT) and the other *open to anyone* (no NAT, or a
  NAT with endpoint-independent filtering, "full cone"): a direct punch too. The hard side's packets leave from
  a port its NAT picks for this peer and the open side lets them in; the handshake follows a peer that answers
  from another port. A hard acceptor then sends full-TTL HELLOs at once (``lead``) instead of waiting;
- one hard and the other behind an easy but filtering NAT: birthday-paradox probing (``plexus.punch.probing``):
  the hard side races many sockets, the easy side sprays probes at random ports of the hard side's address.

Relayed (``plexus.relay``), when nothing direct can work (both hard), when either side asks for it (relay policy
``always``, or an initiator whose direct punch failed asks again with path ``relayed``): the initiator's
allocation if its invite names one, else the acceptor's. Refusals start with ``NO_PATH``, which the initiator
turns into a NAT error (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plexus.nat.mapping import HARD
from plexus.profile.model import Relay

NO_PATH = "no direct path"
OPEN_FILTERING = "endpoint-independent"
PathKind = Literal["direct", "probed", "relayed"]


@dataclass(frozen=True)
class Plan:
    lead: bool = False  # acceptor: send HELLO at full TTL at once (the peer lets anyone in), not only openers
    probe: Literal["", "race", "spray"] = ""  # race: we are the hard side of probing; spray: the easy side
    relay: Literal["", "ours", "theirs"] = ""  # ours: we allocated, the peer sends to our relayed address;
    # theirs: we send to the peer's relayed address

    @property
    def path(self) -> PathKind:
        return "relayed" if self.relay else "probed" if self.probe else "direct"


def open_to_anyone(mapping: str, filtering: str | None) -> bool:
    """Does a packet from any host reach this side's public endpoint? (No NAT, or full-cone filtering.)"""
    return mapping == "none" or (filtering == OPEN_FILTERING and mapping not in HARD)


def direct_plan(ours: str, theirs: str, *, us: str, them: str, our_filtering: str | None = None,
                their_filtering: str | None = None) -> Plan | str:
    """The plan for a direct path, or why there is none (one line, for both logs). ``theirs`` comes off the
    wire: a value we do not know counts as unknown (try)."""
    if ours in HARD and theirs in HARD:
        return (f"{NO_PATH} between {us} ({ours} mapping) and {them} ({theirs} mapping): both are behind NATs "
                "that give a new public port per destination, which only a relay can join")
    if ours in HARD:
        return Plan(lead=True) if open_to_anyone(theirs, their_filtering) else Plan(probe="race")
    if theirs in HARD:
        return Plan() if open_to_anyone(ours, our_filtering) else Plan(probe="spray")
    return Plan(lead=open_to_anyone(theirs, their_filtering))


def acceptor_plan(ours: str, theirs: str, *, us: str, them: str, relay: Relay, their_relay: bool,
                  their_path: str | None, our_filtering: str | None = None,
                  their_filtering: str | None = None) -> Plan | str:
    """The acceptor's choice for one invite, or the refusal to send (one line)."""
    if their_path == "relayed" and relay.policy == "never":
        return f"{them} needs the relay, but {us}'s relay policy is never"
    if their_path == "direct" and relay.policy == "always":
        return f"{us} relays every session (relay policy always), but {them}'s relay policy is never"
    why = f"{them} asked for the relay" if their_path == "relayed" else f"{us}'s relay policy is always"
    if their_path != "relayed" and relay.policy != "always":
        plan = direct_plan(ours, theirs, us=us, them=them, our_filtering=our_filtering,
                           their_filtering=their_filtering)
        if isinstance(plan, Plan):
            return plan
        if relay.policy == "never" or their_path == "direct":
            return f"{plan} (relay policy never)"
        why = plan
    if their_relay:
        return Plan(relay="theirs")
    if relay.servers:
        return Plan(relay="ours")
    return f"{why}; neither {us} nor {them} has a TURN relay configured (relay.servers in the profile)" \
        if why.startswith(NO_PATH) else f"{NO_PATH}: {why}, but neither side has a TURN relay configured"


def wants_allocation(relay: Relay, mapping: str, *, retry: bool) -> bool:
    """Initiator: allocate before inviting? When the relay is certain to be asked for (policy always, or a
    retry after a failed punch) or likely (our NAT is hard: a hard acceptor could only meet us there)."""
    return relay.usable and (retry or relay.policy == "always" or mapping in HARD)


def invite_path(relay: Relay, *, retry: bool) -> str | None:
    """What an initiator's invite asks for: "relayed" (required), "direct" (never relay) or no preference."""
    if relay.policy == "never":
        return "direct"
    return "relayed" if retry or relay.policy == "always" else None


PEER_KINDS = (("a public peer or a full-cone NAT", "none", None),
              ("an endpoint-independent NAT (most home routers)", "endpoint-independent", None),
              ("a symmetric NAT (a new port per destination: CGNAT, mobile)", "address-and-port-dependent", None))


def paths_from(mapping: str, filtering: str | None) -> dict[str, str]:
    """What plexus does from behind this NAT toward each kind of peer (for ``plexus nat``)."""
    words = {"direct": "direct punch", "probed": "direct, by probing (birthday paradox)",
             "relayed": "through a TURN relay (relay.servers on either side)"}
    result = {}
    for label, theirs, their_filtering in PEER_KINDS:
        plan = direct_plan(mapping, theirs, us="us", them="them", our_filtering=filtering,
                           their_filtering=their_filtering)
        result[label] = words["relayed"] if isinstance(plan, str) else words[plan.path]
    return result
