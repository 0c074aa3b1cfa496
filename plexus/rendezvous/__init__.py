"""Rendezvous: exchange authenticated offers with a peer and derive the session secret.

Layers (each replaceable): ``offer`` (the document) and ``auth`` (S/MIME, PSK HMAC, none) and ``secret`` (X25519
+ HKDF) know nothing of transports; a ``Carrier`` moves documents (``email_carrier``: SMTP + IMAP); an
``OfferExchange`` (``exchange``) puts them together into the ``Exchange`` the pipeline uses.
"""

from __future__ import annotations

from plexus.errors import ProfileError
from plexus.profile.model import Profile
from plexus.rendezvous.base import Agreement, Exchange, Invite, LocalOffer, PeerRefused
from plexus.rendezvous.exchange import OfferExchange, Trace

__all__ = ["Agreement", "Exchange", "Invite", "LocalOffer", "OfferExchange", "PeerRefused", "open_exchange"]


def open_exchange(profile: Profile, *, trace: Trace | None = None) -> OfferExchange:
    """The exchange for the profile's rendezvous (email, else DHT). Use it as ``async with open_exchange(p) as x``.
    ``trace(direction, offer)`` is called for every offer sent and every verified offer received."""
    if profile.rendezvous.email is not None:
        from plexus.rendezvous.email.carrier import EmailCarrier

        return OfferExchange(profile, EmailCarrier(profile), trace=trace)
    if profile.rendezvous.dht is not None:
        try:
            from plexus.rendezvous.dht import open_dht_exchange
        except ImportError as error:
            raise ProfileError(f"rendezvous: the DHT carrier is not available ({error})",
                               hint="pip install 'plexus[dht]', or use rendezvous.email") from error
        return open_dht_exchange(profile, trace=trace)
    raise ProfileError("rendezvous: no carrier configured", hint="add rendezvous.email")
