"""Doctor: the mail servers, with the carrier's own code: SMTP reachable with verified TLS and the login
accepted; IMAP opened exactly as the inbox opens it (implicit TLS or STARTTLS, login, folder), plus IDLE and
UIDPLUS."""

from __future__ import annotations

import asyncio
import ssl

import aiosmtplib

from plexus.doctor.check import Check
from plexus.errors import PlexusError, one_line
from plexus.profile.model import EmailRendezvous

NETWORK_TIMEOUT = 10.0


async def check_smtp(config: EmailRendezvous, password: str | None, context: ssl.SSLContext) -> list[Check]:
    from plexus.rendezvous.email.mail import describe_failure, tls_hint

    server = config.smtp
    where = f"{server.host}:{server.port} ({server.tls})"
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, use_tls=server.tls == "implicit",
                             start_tls=server.tls == "starttls", tls_context=context, timeout=NETWORK_TIMEOUT)
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        cause = error.__cause__ if isinstance(error.__cause__, ssl.SSLError) else error
        return [Check("SMTP server", "fail", describe_failure(server, "SMTP", cause), tls_hint(cause))]
    checks = [Check("SMTP server", "ok", f"{where}, TLS verified")]
    try:
        if password is None:
            checks.append(Check("SMTP login", "n/a", "no password (see the password check)"))
        else:
            await client.login(config.login, password)
            checks.append(Check("SMTP login", "ok", f"{config.login} accepted"))
    except aiosmtplib.SMTPAuthenticationError:
        checks.append(Check("SMTP login", "fail", f"{where} rejected the login {config.login!r}",
                            "check rendezvous.email.login and password"))
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        checks.append(Check("SMTP login", "fail", f"{where}: {one_line(error)}", "check the server's AUTH setup"))
    finally:
        try:
            await asyncio.wait_for(client.quit(), 2)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
    return checks



async def check_imap(config: EmailRendezvous, password: str | None) -> list[Check]:
    from plexus.rendezvous.email.inbox import Inbox, LoginRefused

    server = config.imap
    where = f"{server.host}:{server.port} ({server.tls})"
    if password is None:
        return [Check("IMAP", "n/a", "no password (see the password check)")]
    inbox = Inbox(config, password, "plexus-doctor")
    try:
        await inbox.open()
    except LoginRefused as error:
        return [Check("IMAP server", "ok", f"{where}, TLS verified"), Check("IMAP login", "fail", error.message,
                                                                             error.hint)]
    except PlexusError as error:
        return [Check("IMAP server", "fail", error.message, error.hint)]
    try:
        checks = [Check("IMAP server", "ok", f"{where}, TLS verified"),
                  Check("IMAP login", "ok", f"{config.login} accepted, folder {config.folder!r} selected"),
                  _idle_check(server.idle, inbox.idle_offered, server.poll)]
        if not inbox.uidplus:
            checks.append(Check("IMAP UIDPLUS", "warn", "no UIDPLUS: processed offers are flagged \\Deleted "
                                "but not expunged (plexus never expunges other mail)", None))
        return checks
    finally:
        await inbox.close()


def _idle_check(wanted: bool, offered: bool, poll: float) -> Check:
    if wanted and offered:
        return Check("IMAP IDLE", "ok", "supported: offers arrive by push (answers are polled for, fast)")
    if not offered:
        return Check("IMAP IDLE", "warn", f"the server does not offer IDLE: plexus polls every {poll:g} s",
                     "lower rendezvous.email.imap.poll for quicker invites")
    return Check("IMAP IDLE", "ok", f"off in the profile: plexus polls every {poll:g} s")


