"""The tests' own IMAP view of a lab mailbox (imaplib in a thread that joined the site's namespace)."""

from __future__ import annotations

import imaplib
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

from plexus.lab.system import in_netns

SITE_OF = {"alice": "a", "bob": "b", "carol": "c"}
T = TypeVar("T")


def in_mailbox(lab: Any, user: str, action: Callable[[imaplib.IMAP4_SSL], T]) -> T:
    def run() -> T:
        client = imaplib.IMAP4_SSL(lab.mail_host, 993, ssl_context=ssl.create_default_context(cafile=str(lab.ca)),
                                   timeout=10)
        try:
            client.login(user, lab.password(user))
            client.select("INBOX")
            return action(client)
        finally:
            client.logout()

    return in_netns(lab.ns(SITE_OF[user]), run)


def append(lab: Any, user: str, messages: list[tuple[bytes, str]]) -> None:
    """APPEND (message, flags) to the user's INBOX, in order."""
    def action(client: imaplib.IMAP4_SSL) -> None:
        for message, flags in messages:
            status, _ = client.append("INBOX", flags or None, imaplib.Time2Internaldate(time.time()), message)
            assert status == "OK"

    in_mailbox(lab, user, action)


def inventory(lab: Any, user: str) -> dict[str, str]:
    """Subject -> flags of every message in the user's INBOX."""
    def action(client: imaplib.IMAP4_SSL) -> dict[str, str]:
        _status, data = client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT X-PLEXUS-TO)])")
        found: dict[str, str] = {}
        for item in data:
            if isinstance(item, tuple):
                flags = item[0].decode().split("FLAGS (", 1)[1].split(")", 1)[0]
                headers = item[1].decode()
                subject = next((line[9:] for line in headers.splitlines() if line.startswith("Subject: ")), "?")
                found[subject] = " ".join(sorted(flag for flag in flags.split() if flag != "\\Recent"))
        return found

    return in_mailbox(lab, user, action)


def clear(lab: Any, user: str) -> None:
    def action(client: imaplib.IMAP4_SSL) -> None:
        client.uid("STORE", "1:*", "+FLAGS.SILENT", "(\\Deleted)")
        client.expunge()

    in_mailbox(lab, user, action)
