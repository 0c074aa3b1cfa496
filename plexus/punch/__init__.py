"""Stage 4: open the NAT toward the peer and prove, over the punched path, that both hold the session secret."""

from plexus.punch.handshake import Opener, PunchResult, PunchStats, handshake

__all__ = ["Opener", "PunchResult", "PunchStats", "handshake"]
