"""Which path two peers can take, from both sides' NAT mapping (each offer carries its sender's).

- Both easy (no NAT, endpoint-independent, or unknown: one ordinary STUN server could not tell): a direct punch.
- One hard (a new public port per destination: symmetric, CGNAT) and the other public: a direct punch too. The
  hard side's packets leave from a port its NAT picks for this peer, and the handshake follows a peer that
  answers from another port; the public side has no NAT to open, so an acceptor then sends full-TTL HELLOs
  from the start instead of waiting to be heard.
- Otherwise nothing direct can work: a hard NAT toward a peer behind a NAT needs probing or a relay, which
  plexus does not do yet; the refusal says so (and starts with ``NO_PATH``, which the initiator turns into a
  NAT error, exit 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from plexus.nat.mapping import HARD

NO_PATH = "no direct path"


@dataclass(frozen=True)
class Plan:
    lead: bool  # acceptor: send HELLO at full TTL at once (the peer is public), not only TTL-limited openers


def direct_plan(ours: str, theirs: str, *, us: str, them: str) -> Plan | str:
    """The plan for a direct punch, or why there is none (one line, for both logs). ``theirs`` comes off the
    wire: a value we do not know counts as unknown (try)."""
    if (ours in HARD and theirs != "none") or (theirs in HARD and ours != "none"):
        hard = [name for name, mapping in ((us, ours), (them, theirs)) if mapping in HARD]
        return (f"{NO_PATH} between {us} ({ours} mapping) and {them} ({theirs} mapping): "
                f"{' and '.join(hard)} {'is' if len(hard) == 1 else 'are'} behind a NAT that gives a new public "
                "port per destination, which only a peer with a public address can reach (probing and relays "
                "are not supported yet)")
    return Plan(lead=theirs == "none")
