"""The mailbox carrier: ``carrier`` publishes an offer by SMTP and receives ours by IMAP; ``inbox`` is the IMAP
side (search, fetch, delete only plexus mail; IDLE or polling); ``mail`` composes and parses offer mails and
submits them (aiosmtplib), with the TLS context both use."""

from __future__ import annotations

from plexus.rendezvous.email.carrier import EmailCarrier

__all__ = ["EmailCarrier"]
