"""The relay: a standard TURN server (RFC 8656) joins two peers that no direct path can (two NATs that give a new
public port per destination, or a punch that failed).

Only one side allocates. It puts its relayed address in its authenticated offer and creates the permission for
the peer's address (``allocation``); the other side sends straight to the relayed address from its punched port,
as to any peer. The handshake then runs over the relay as over a direct path, and the allocating side's payload
talks to a local port that plexus joins to the allocation (``bridge``). Credentials: long-term, or the TURN REST
shared-secret scheme (``credentials``).
"""

from plexus.relay.allocation import Allocation, allocate
from plexus.relay.bridge import Bridge
from plexus.relay.credentials import credentials_for, rest_credentials

__all__ = ["Allocation", "Bridge", "allocate", "credentials_for", "rest_credentials"]
