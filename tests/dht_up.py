"""`plexus ...` with the DHT factory wired in: profiles with rendezvous.dht (and no email) get
``plexus.rendezvous.dht.open_dht_exchange``. Until ``plexus.rendezvous.open_exchange`` selects the DHT itself
this is how the lab tests run ``plexus up`` over the DHT; afterwards it changes nothing.

    python3 tests/dht_up.py up bob-dht --json
"""

from __future__ import annotations

import sys

import plexus.session
from plexus.cli import main
from plexus.profile.model import Profile
from plexus.rendezvous import OfferExchange
from plexus.rendezvous.dht import open_dht_exchange

_original = plexus.session.open_exchange


def _open_exchange(profile: Profile) -> OfferExchange:
    if profile.rendezvous.dht is not None and profile.rendezvous.email is None:
        return open_dht_exchange(profile)
    return _original(profile)


plexus.session.open_exchange = _open_exchange

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
