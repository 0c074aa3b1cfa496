"""The mailbox as a rendezvous carrier: SMTP to publish an offer to a peer's address, IMAP to receive ours."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from plexus.errors import ProfileError, RendezvousError
from plexus.profile.model import Peer, Profile
from plexus.rendezvous.base import Document
from plexus.rendezvous.email.inbox import FAST_INTERVAL, Inbox
from plexus.rendezvous.email.mail import SMTP_TIMEOUT, TransientMailError, compose, send_mail, tls_context

log = logging.getLogger("plexus.rendezvous")

RETRY_FIRST = 0.25  # seconds before the second try, doubling up to RETRY_MAX
RETRY_MAX = 4.0
# No new try starts after this share of rendezvous.timeout: an offer delivered later leaves the peer too little
# of the initiator's wait to answer, and an error now says more than a timeout later.
RETRY_SHARE = 0.5


async def _retrying(what: str, operation: Callable[[float], Awaitable[None]], within: float) -> None:
    """Run ``operation(seconds left of within)``; a TransientMailError is retried with backoff while less than
    RETRY_SHARE of ``within`` has passed, anything else fails at once."""
    started = time.monotonic()
    retry_until, end = started + within * RETRY_SHARE, started + within
    for attempt in itertools.count(1):
        try:
            await operation(max(1.0, end - time.monotonic()))
            return
        except TransientMailError as error:
            left = retry_until - time.monotonic()
            if left <= 0:
                raise TransientMailError(f"{error.message} (gave up after {attempt} tries in "
                                         f"{time.monotonic() - started:.1f} s)", hint=error.hint) from error
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (attempt - 1), left)  # the last try at retry_until
            log.warning("rendezvous: %s failed (%s); trying again in %.2g s", what, error.message, delay)
            await asyncio.sleep(delay)


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
        self._retry_within = profile.rendezvous.timeout
        self.inbox = Inbox(config, self._password, profile.host.id, fast_interval=fast_interval,
                           steady_poll=steady_poll)

    async def __aenter__(self) -> EmailCarrier:
        await _retrying("connecting to the mailbox", lambda _left: self.inbox.open(), self._retry_within)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inbox.close()

    async def publish(self, peer: Peer, data: bytes, media_type: str) -> None:
        if not peer.address:
            raise RendezvousError(f"peer {peer.id!r} has no mail address", hint="set peers[].address")
        message = compose(self._sender, peer.address, peer.id, data, media_type)
        # A second copy, should the first have arrived after all, is dropped by the receiver as a replay.
        await _retrying(f"sending to {peer.address}",
                        lambda left: send_mail(self._config, self._password, message, self._context,
                                               min(SMTP_TIMEOUT, left)), self._retry_within)

    def documents(self) -> AsyncIterator[Document]:
        return self.inbox.documents()

    def expect_reply(self, within: float) -> None:
        self.inbox.expect_reply(within)
