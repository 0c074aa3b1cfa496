"""Which path two peers can take, from both sides' NAT mapping (each offer carries its sender's).

- Both easy (no NAT, endpoint-independent, or unknown: one ordinary STUN server could not tell): a direct punch.
- One hard (a new public port per destination: symmetric, CGNAT) and the other public: a direct punch too. The
  hard side's packets leave from a port its NAT picks for this peer, and the handshake follows a peer that
  answers from another port; the public side has no NAT to open, so an acceptor then sends full-TTL HELLOs
  from the start instead of waiting to be heard.
- One hard and the other behind an easy NAT: birthday-paradox probing (``plexus.punch.probing``): the hard side
  races many sockets, the easy side sprays probes at random ports of the hard side's address.
- Both hard: nothing direct can work (a relay would); the refusal says so, and starts with ``NO_PATH``, which the
  initiator turns into a NAT error (exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plexus.nat.mapping import HARD

NO_PATH = "no direct path"


@dataclass(frozen=True)
class Plan:
    lead: bool = False  # acceptor: send HELLO at full TTL at once (the peer is public), not only openers
    probe: Literal["", "race", "spray"] = ""  # race: we are the hard side of probing; spray: the easy side


def direct_plan(ours: str, theirs: str, *, us: str, them: str) -> Plan | str:
    """The plan for a direct path, or why there is none (one line, for both logs). ``theirs`` comes off the
    wire: a value we do not know counts as unknown (try)."""
    if ours in HARD and theirs in HARD:
        return (f"{NO_PATH} between {us} ({ours} mapping) and {them} ({theirs} mapping): both are behind NATs "
                "that give a new public port per destination, which only a relay can join (not supported yet)")
    if ours in HARD:
        return Plan(lead=theirs == "none", probe="" if theirs == "none" else "race")
    if theirs in HARD:
        return Plan(probe="" if ours == "none" else "spray")
    return Plan(lead=theirs == "none")
