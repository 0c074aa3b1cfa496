"""The mailbox as a rendezvous carrier: SMTP to publish an offer to a peer's address, IMAP to receive ours."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from plexus.errors import ProfileError, RendezvousError
from plexus.profile.model import Peer, Profile
from plexus.rendezvous.base import Document
from plexus.rendezvous.inbox import FAST_INTERVAL, Inbox
from plexus.rendezvous.mail import TransientMailError, compose, send_mail, tls_context

log = logging.getLogger("plexus.rendezvous")

ATTEMPTS = 3  # tries of a connection that timed out or dropped (lossy path, server restart)
RETRY_DELAY = 0.5  # seconds before the second try, doubling


async def _retrying(what: str, operation: Callable[[], Awaitable[None]]) -> None:
    """Run ``operation``; a TransientMailError is retried (bounded), anything else fails at once."""
    for attempt in range(ATTEMPTS):
        try:
            await operation()
            return
        except TransientMailError as error:
            if attempt == ATTEMPTS - 1:
                raise
            log.warning("rendezvous: %s failed (%s); trying again", what, error.message)
            await asyncio.sleep(RETRY_DELAY * 2 ** attempt)


class EmailCarrier:
    """Implements ``plexus.rendezvous.base.Carrier`` over SMTP + IMAP."""

    def __init__(self, profile: Profile, *, fast_interval: float | None = FAST_INTERVAL,
                 steady_poll: float | None = None) -> None:
        config = profile.rendezvous.email
        if config is None:
            raise ProfileError("rendezvous: no email settings", hint="add rendezvous.email")
        if not profile.host.address:
            raise ProfileError("host.address is missing: peers send their answers there", hint="set host.address")
        self._config = config
        self._sender = profile.host.address
        self._password = config.password.resolve()
        self._context = tls_context(config.ca)
        self.inbox = Inbox(config, self._password, profile.host.id, fast_interval=fast_interval,
                           steady_poll=steady_poll)

    async def __aenter__(self) -> EmailCarrier:
        await _retrying("connecting to the mailbox", self.inbox.open)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.close()

    async def publish(self, peer: Peer, data: bytes, media_type: str) -> None:
        if not peer.address:
            raise RendezvousError(f"peer {peer.id!r} has no mail address", hint="set peers[].address")
        message = compose(self._sender, peer.address, peer.id, data, media_type)
        # A second copy, should the first have arrived after all, is dropped by the receiver as a replay.
        await _retrying(f"sending to {peer.address}", lambda: send_mail(self._config, self._password, message,
                                                                        self._context))

    def documents(self) -> AsyncIterator[Document]:
        return self.inbox.documents()

    def expect_reply(self, within: float) -> None:
        self.inbox.expect_reply(within)
