"""Receive offer mails with aioimaplib: search only plexus mail, fetch it without setting \\Seen, hand it over,
then flag and expunge exactly those UIDs. Other mail is never fetched, flagged, moved or deleted.

Waiting: IMAP IDLE when the server offers it and the profile allows it, else NOOP polling at ``imap.poll``.
While an answer is expected soon (``expect_reply``) the inbox polls with NOOP + SEARCH every ``FAST_INTERVAL``
instead. Measured in the lab (benchmarks/rendezvous_latency.py, 50 runs): dovecot reports a new mail to an
IDLE client only after ~0.5 s (median 512-550 ms), a 25 ms NOOP poll sees it after 51-61 ms median (p95 80
ms), of which the mail server's own delivery is most; the cost is ~0.5 % of a core on the server. The long wait
of an acceptor stays on IDLE (kind to public servers, which throttle busy clients); a profile that wants faster
invites on its own server sets ``imap: {idle: false, poll: 0.1}`` (77 ms median). A dropped connection is
reopened with bounded exponential backoff; a refused login is fatal (retrying a wrong password helps nobody).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import aioimaplib

from plexus.errors import RendezvousError, one_line
from plexus.profile.model import EmailRendezvous
from plexus.rendezvous.base import Document
from plexus.rendezvous.email.imap import fetched_messages, number_in, reports_new_mail, response_text, search_uids
from plexus.rendezvous.email.mail import (
    MAX_MAIL_BYTES,
    OFFER_HEADER,
    RECIPIENT_HEADER,
    extract_document,
    failure,
    parse_headers,
    tls_context,
)

log = logging.getLogger("plexus.rendezvous")

FAST_INTERVAL = 0.025  # NOOP cadence while an answer is expected
FAST_SPAN = 5.0  # ... for this long after an offer went out
ANSWER_POLL = 0.5  # then NOOP at this cadence until the answer's deadline (never IDLE while an answer is due:
                   # a lossy or slow path must not leave the answer waiting for the next IDLE refresh)
COMMAND_TIMEOUT = 15.0
OPEN_TIMEOUT = 30.0  # connect + TLS + login + select, all together
IDLE_REFRESH = 25.0  # re-issue IDLE and search again: a notification lost on a bad path costs at most this
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
GIVE_UP_AFTER = 600.0  # consecutive seconds without a working connection
NETWORK_ERRORS = (OSError, TimeoutError, aioimaplib.AioImapException)
T = TypeVar("T")


class ConnectionLost(Exception):
    """The server closed the connection (e.g. it restarted)."""


class LoginRefused(RendezvousError):
    pass


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Inbox:
    """One IMAP connection to our mailbox folder, reopened when it drops. Use ``documents()`` from one task."""

    def __init__(self, config: EmailRendezvous, password: str, our_id: str, *,
                 fast_interval: float | None = FAST_INTERVAL, steady_poll: float | None = None) -> None:
        self._config = config
        self._password = password
        self._our_id = our_id
        self._context = tls_context(config.ca)
        self._fast_interval = fast_interval  # None: no fast polling, IDLE (or poll) only
        self._steady_poll = steady_poll  # NOOP cadence instead of IDLE in the long wait (None: IDLE if offered)
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()
        self._wake = asyncio.Event()
        self._fast_until = 0.0
        self._answer_until = 0.0
        self._next_uid = 1
        self._collected: list[int] = []  # UIDs of our offer mails handed over, to delete
        self._scanned_to = 1  # becomes _next_uid once the collected mails are deleted (else: seen again)
        self._uidvalidity: int | None = None
        self.idle = False  # the server offers IDLE and the profile allows it
        self.idle_offered = False
        self.uidplus = False
        self._news = False  # a response since the last SEARCH reported a new message (EXISTS)

    def expect_reply(self, within: float) -> None:
        if self._fast_interval is None:
            return
        now = time.monotonic()
        self._fast_until = max(self._fast_until, now + min(within, FAST_SPAN))
        self._answer_until = max(self._answer_until, now + within)
        self._wake.set()

    async def open(self) -> None:
        """Connect, log in, select the folder; RendezvousError (one line) when that fails."""
        server = self._config.imap
        self._lost.clear()
        client = aioimaplib.IMAP4(server.host, server.port, timeout=COMMAND_TIMEOUT,
                                  conn_lost_cb=lambda _error: self._lost.set(),
                                  ssl_context=self._context if server.tls == "implicit" else None)
        self._client = client
        self._watch_for_new_mail(client)
        try:
            response = await self._guarded(self._login_and_select(client), OPEN_TIMEOUT)
        except RendezvousError:
            await self.close()
            raise
        except (*NETWORK_ERRORS, ConnectionLost) as error:
            await self.close()
            hint = "check the imap host, port and tls, and rendezvous.email.ca"
            raise failure(server, "IMAP", error, hint) from error
        uidvalidity = number_in(rb"UIDVALIDITY (\d+)", response.lines)
        if uidvalidity != self._uidvalidity:  # a new (or recreated) folder: look at all of its plexus mail
            self._uidvalidity, self._next_uid, self._scanned_to = uidvalidity, 1, 1
        self.idle_offered = client.has_capability("IDLE")
        self.idle = server.idle and self.idle_offered
        self.uidplus = client.has_capability("UIDPLUS")

    async def _login_and_select(self, client: aioimaplib.IMAP4) -> aioimaplib.Response:
        server = self._config.imap
        await client.wait_hello_from_server()
        if server.tls == "starttls":
            await self._starttls(client)
        response = await client.login(self._config.login, self._password)
        if response.result != "OK":
            raise LoginRefused(f"IMAP server {server.host}:{server.port} rejected the login "
                               f"{self._config.login!r}", hint="check rendezvous.email.login and password")
        await asyncio.wait_for(client.protocol.capability(), COMMAND_TIMEOUT)  # may differ after login
        response = await client.select(self._config.folder)
        if response.result != "OK":
            raise RendezvousError(f"IMAP folder {self._config.folder!r} cannot be selected: "
                                  f"{response_text(response.lines)}", hint="check rendezvous.email.folder")
        return response

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        # aioimaplib has no STARTTLS helper: send the command, then upgrade the transport in place
        protocol = client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise RendezvousError(f"IMAP server {self._config.imap.host}:{self._config.imap.port} does not offer "
                                  "STARTTLS", hint="use tls: implicit (port 993)")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        response = await asyncio.wait_for(protocol.execute(command), COMMAND_TIMEOUT)
        if response.result != "OK":
            raise RendezvousError(f"IMAP STARTTLS refused: {response_text(response.lines)}")
        loop = asyncio.get_running_loop()
        protocol.transport = await loop.start_tls(protocol.transport, protocol, self._context,
                                                  server_hostname=self._config.imap.host)
        await asyncio.wait_for(protocol.capability(), COMMAND_TIMEOUT)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.has_pending_idle():
                client.idle_done()
            if not self._lost.is_set() and client.get_state() in ("AUTH", "SELECTED"):
                await asyncio.wait_for(client.logout(), 2.0)
        with contextlib.suppress(Exception):
            if client.protocol.transport is not None:
                client.protocol.transport.close()

    async def documents(self) -> AsyncIterator[Document]:
        """Offer documents addressed to us, as they arrive; reconnects inside, forever (or until cancelled)."""
        failing_since: float | None = None
        attempt = 0
        while True:
            try:
                if self._client is None:
                    await self.open()
                    if failing_since is not None:
                        log.info("rendezvous: mailbox connection restored")
                    failing_since, attempt = None, 0
                while True:
                    for document in await self._collect():
                        yield document
                    await self._delete_collected()
                    await self._wait_for_news()
            except LoginRefused:
                raise
            except (*NETWORK_ERRORS, ConnectionLost, RendezvousError) as error:
                await self.close()
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since > GIVE_UP_AFTER:
                    raise RendezvousError(f"mailbox unreachable for {GIVE_UP_AFTER:.0f} s: {error}") from error
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** attempt)
                attempt += 1
                log.warning("rendezvous: mailbox connection lost (%s); reconnecting in %.1f s",
                            one_line(error), delay)
                await asyncio.sleep(delay)

    async def _call(self, operation: Awaitable[T]) -> T:
        """Run one IMAP command, failing at once (not after the command timeout) when the connection drops."""
        return await self._guarded(operation, COMMAND_TIMEOUT + 5)

    def _watch_for_new_mail(self, client: aioimaplib.IMAP4) -> None:
        """Note every untagged ``* N EXISTS``, whatever command it came with. aioimaplib drops those that arrive
        during an asynchronous command (UID FETCH, UID STORE): a mail that lands after our SEARCH is reported
        there once, and the server does not report it again when IDLE starts, so it would wait for the next
        IDLE refresh (25 s) without this."""
        protocol = client.protocol
        untagged = getattr(protocol, "_untagged_response", None)
        if untagged is None:  # another aioimaplib: IDLE refreshes still find such mail, only later
            log.warning("rendezvous: cannot watch IMAP untagged responses with this aioimaplib")
            return

        def watching(line: bytes) -> Any:
            if reports_new_mail([line.removeprefix(b"* ")]):
                self._news = True
            return untagged(line)

        protocol._untagged_response = watching

    async def _guarded(self, operation: Awaitable[T], timeout: float) -> T:
        """Await ``operation`` with a hard deadline. asyncio.wait, not wait_for: aioimaplib commands hold a
        Condition lock that can keep a cancelled command from ever finishing when the server stalls."""
        task = asyncio.ensure_future(operation)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({task, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            # Abandoned (we were cancelled, the connection dropped, or it stalled): its late failure, e.g. an
            # IDLE refused by a server that is closing the connection, is ours to swallow, never a traceback.
            task.add_done_callback(_retrieve)
        if task.done():
            return task.result()
        task.cancel()
        if self._lost.is_set():
            raise ConnectionLost("the server closed the connection")
        self._abort()
        raise TimeoutError(f"no answer within {timeout:g} s")

    def _abort(self) -> None:
        """Drop a stalled connection at once (the next open starts a fresh one)."""
        self._lost.set()
        if self._client is not None and self._client.protocol.transport is not None:
            with contextlib.suppress(Exception):
                self._client.protocol.transport.abort()

    async def _collect(self) -> list[Document]:
        """Fetch the new plexus mails addressed to us; remember their UIDs for deletion."""
        assert self._client is not None
        client = self._client
        self._collected = []
        self._news = False  # what the SEARCH below sees needs no second look; a later EXISTS does
        response = await self._call(client.uid_search(f"UID {self._next_uid}:*", "HEADER", OFFER_HEADER, '""',
                                                      charset=None))
        uids = sorted(uid for uid in search_uids(response.lines) if uid >= self._next_uid)
        if not uids:
            return []
        response = await self._call(client.uid("fetch", ",".join(map(str, uids)),
                                               f"(UID RFC822.SIZE BODY.PEEK[]<0.{MAX_MAIL_BYTES}>)"))
        documents = []
        for uid, size, data in fetched_messages(response.lines):
            if uid not in uids:
                continue
            ours, document = self._document(uid, size, data)
            if ours:
                self._collected.append(uid)
            if document is not None:
                documents.append(document)
        self._scanned_to = max(uids) + 1
        return documents

    def _document(self, uid: int, size: int, data: bytes) -> tuple[bool, Document | None]:
        """(addressed to us?, its offer document or None when it has none we can use)."""
        headers = parse_headers(data)
        recipient = (headers.get(RECIPIENT_HEADER) or "").strip()
        if recipient != self._our_id:
            log.debug("rendezvous: mail uid %d is for %r, not us; left alone", uid, recipient)
            return False, None
        origin = f"mail uid {uid} from {one_line(headers.get('From') or '?')[:80]}"
        if size > MAX_MAIL_BYTES:
            log.warning("rendezvous: dropped %s: %d bytes, larger than %d", origin, size, MAX_MAIL_BYTES)
            return True, None
        try:
            return True, Document(extract_document(data), origin)
        except (ValueError, LookupError) as error:
            log.warning("rendezvous: dropped %s: %s", origin, one_line(error))
            return True, None

    async def _delete_collected(self) -> None:
        """Flag and expunge the processed offer mails, by UID only (UID EXPUNGE needs UIDPLUS; without it
        they stay flagged \\Deleted: a plain EXPUNGE could remove other mail the user flagged)."""
        if self._collected and self._client is not None:
            uid_set = ",".join(map(str, self._collected))
            await self._call(self._client.uid("store", uid_set, "+FLAGS.SILENT", r"(\Deleted)"))
            if self.uidplus:
                await self._call(self._client.uid("expunge", uid_set))
            self._collected = []
        self._next_uid = max(self._next_uid, self._scanned_to)

    async def _wait_for_news(self) -> None:
        assert self._client is not None
        self._wake.clear()
        if self._news:  # mail arrived between our SEARCH and now: search again instead of waiting (for IDLE)
            return
        if self._fast_interval is not None and time.monotonic() < self._fast_until:
            await self._sleep(self._fast_interval, wake=False)
        elif time.monotonic() < self._answer_until:
            await self._sleep(min(ANSWER_POLL, self._config.imap.poll), wake=True)
        elif self._steady_poll is not None and self._steady_poll < self._config.imap.poll:
            await self._sleep(self._steady_poll, wake=True)
        elif self.idle:
            await self._idle(self._client)
            return
        else:
            await self._sleep(self._config.imap.poll, wake=True)
        await self._call(self._client.noop())

    async def _sleep(self, seconds: float, *, wake: bool) -> None:
        waiters = {asyncio.ensure_future(self._lost.wait())}
        if wake:
            waiters.add(asyncio.ensure_future(self._wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._lost.is_set():
            raise ConnectionLost("the server closed the connection")

    async def _idle(self, client: aioimaplib.IMAP4) -> None:
        """IDLE until the server reports a change, an answer becomes expected, or the refresh time is up."""
        idle = await self._call(client.idle_start(timeout=IDLE_REFRESH))
        push = asyncio.ensure_future(client.wait_server_push(timeout=IDLE_REFRESH + 10))
        wake = asyncio.ensure_future(self._wake.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({push, wake, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (push, wake, lost):
                waiter.cancel()
        if self._lost.is_set():
            idle.cancel()
            raise ConnectionLost("the server closed the connection")
        client.idle_done()
        await self._call(asyncio.wait_for(idle, COMMAND_TIMEOUT))
        while not client.protocol.idle_queue.empty():  # notifications that arrived before DONE
            client.protocol.idle_queue.get_nowait()
