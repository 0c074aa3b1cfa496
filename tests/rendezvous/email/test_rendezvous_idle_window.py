"""No missed invites: a mail that lands after the inbox's UID SEARCH and before its IDLE starts (reported by the
server only in the response of the commands in between, never again in IDLE) is still picked up at once, not at
the next IDLE refresh 25 s later. The lab's dovecot with IDLE, an ``Inbox`` in site b's namespace, and a second
IMAP connection that APPENDs the next offer mail exactly in that window, 50 times in a row."""

from __future__ import annotations

import asyncio
import imaplib
import ssl
import time
from typing import Any

from support.mailbox import clear

from plexus.lab.system import in_netns
from plexus.profile import load
from plexus.rendezvous.email.inbox import IDLE_REFRESH, Inbox
from plexus.rendezvous.email.mail import compose

ROUNDS = 50


def offer_mail(number: int) -> bytes:
    message = compose("alice@plexus.test", "bob@plexus.test", "bob", f'{{"round": {number}}}'.encode(),
                      "application/json")
    return bytes(message)


def test_a_mail_landing_between_search_and_idle_is_seen_at_once(lab: Any) -> None:
    clear(lab, "bob")
    profile = load(str(lab.profile_dir("b") / "alice.yaml"))
    assert profile.rendezvous.email is not None
    config, password = profile.rendezvous.email, lab.password("bob")
    context = ssl.create_default_context(cafile=str(lab.ca))

    def append(number: int) -> None:  # a second connection, as a peer's mail delivered that very moment
        client = imaplib.IMAP4_SSL(lab.mail_host, 993, ssl_context=context, timeout=10)
        try:
            client.login("bob", password)
            status, _ = client.append("INBOX", None, imaplib.Time2Internaldate(time.time()), offer_mail(number))
            assert status == "OK"
        finally:
            client.logout()

    async def scenario() -> list[float]:
        inbox = Inbox(config, password, "bob", fast_interval=None)  # an acceptor's long wait: IDLE only
        original = inbox._delete_collected
        pending: dict[str, float] = {}
        delays: list[float] = []

        async def in_the_window() -> None:  # after SEARCH and FETCH, before STORE/EXPUNGE and IDLE
            if pending.get("next") is not None and pending.get("sent") is None:
                await asyncio.get_running_loop().run_in_executor(None, append, int(pending["next"]))
                pending["sent"] = time.monotonic()
            await original()

        inbox._delete_collected = in_the_window  # type: ignore[method-assign]
        await inbox.open()
        assert inbox.idle, "the lab's dovecot offers IDLE"
        try:
            await asyncio.get_running_loop().run_in_executor(None, append, 0)
            documents = inbox.documents()
            for number in range(ROUNDS + 1):
                document = await asyncio.wait_for(documents.__anext__(), IDLE_REFRESH - 5)
                assert f'"round": {number}'.encode() in document.data, document
                if pending.get("sent") is not None:
                    delays.append(time.monotonic() - pending["sent"])
                pending.clear()
                if number < ROUNDS:
                    pending["next"] = number + 1
        finally:
            await inbox.close()
        return delays

    delays = in_netns(lab.ns("b"), lambda: asyncio.run(scenario()))
    assert len(delays) == ROUNDS
    assert max(delays) < 3.0, f"a mail in the SEARCH->IDLE window waited {max(delays):.1f} s (delays: {delays})"
