"""Offer mails: compose and parse them, send them with aiosmtplib, and the TLS context both mail clients use.

A plexus mail carries ``X-Plexus-Offer: 1`` (so that plexus searches, reads and deletes only its own mail) and
``X-Plexus-To: <recipient host id>`` (so that several plexus hosts can share one mailbox and each takes only its
own offers). The document travels base64-encoded as the single MIME body: ``application/pkcs7-mime`` (S/MIME) or
``application/json`` (psk, none).
"""

from __future__ import annotations

import email.parser
import email.policy
import errno
import functools
import os
import socket
import ssl
from email.message import EmailMessage, Message
from email.utils import formatdate, make_msgid
from pathlib import Path

import aiosmtplib

from plexus.errors import RendezvousError
from plexus.profile.model import EmailRendezvous, MailServer

OFFER_HEADER = "X-Plexus-Offer"
RECIPIENT_HEADER = "X-Plexus-To"
SUBJECT = "plexus offer"
MAX_MAIL_BYTES = 160 * 1024  # larger mails are dropped unread (an offer document is at most 96 KiB)
OFFER_TYPES = ("application/pkcs7-mime", "application/x-pkcs7-mime", "application/json")
SMTP_TIMEOUT = 15.0


@functools.lru_cache(maxsize=8)
def tls_context(ca: Path | None) -> ssl.SSLContext:
    """Verified TLS: the system CAs plus the profile's CA file. There is no way to turn verification off.
    Cached: loading the system CAs costs ~16 ms, and SMTP and IMAP share one context."""
    context = ssl.create_default_context()
    if ca is not None:
        try:
            context.load_verify_locations(cafile=str(ca))
        except (OSError, ssl.SSLError) as error:
            raise RendezvousError(f"mail CA file {ca} cannot be loaded: {error}",
                                  hint="fix rendezvous.email.ca") from error
    return context


def compose(sender: str, recipient: str, recipient_id: str, document: bytes, media_type: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = SUBJECT
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid("plexus", domain=sender.rpartition("@")[2] or None)
    message[OFFER_HEADER] = "1"
    message[RECIPIENT_HEADER] = recipient_id
    maintype, _, rest = media_type.partition("/")
    subtype, *parameters = (part.strip() for part in rest.split(";"))
    params = dict(parameter.split("=", 1) for parameter in parameters)
    message.set_content(document, maintype=maintype, subtype=subtype, cte="base64",
                        params={key: value.strip('"') for key, value in params.items()})
    return message


def parse_headers(data: bytes) -> Message:
    """The headers of a (possibly truncated) mail."""
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)


def extract_document(data: bytes) -> bytes:
    """The offer document in a mail; ValueError when there is none."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    for part in message.walk():
        if part.get_content_type() in OFFER_TYPES:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload:
                return payload
            raise ValueError("the offer part is empty")
    raise ValueError(f"no offer part ({', '.join(OFFER_TYPES)})")


class TransientMailError(RendezvousError):
    """Worth another try: a server restarting (refused, reset), busy (4xx), or a lossy path (timeout)."""


# Socket errors a restarting server or a flapping path gives; anything else (a bad name, ...) is the profile's.
_TRANSIENT_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                               errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
                               errno.EHOSTDOWN})


def is_transient(error: BaseException) -> bool:
    """Whether retrying may help. Transient: connection refused, reset or timed out, a 4xx reply (RFC 5321 4.2.1:
    "the error condition is temporary"), a name server that did not answer. Permanent: a 5xx reply (a refused
    login, sender or recipient), a TLS certificate that does not verify, any other TLS error, an unknown name."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return bool(error.recipients) and all(is_transient(refused) for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):  # before SMTPConnectError: a 421/554 greeting
        return 400 <= error.code < 500
    if isinstance(error, ssl.SSLError):  # (SSLCertVerificationError among them)
        return isinstance(error, ssl.SSLEOFError)  # the server went away mid-handshake
    if isinstance(error, socket.gaierror):
        return error.errno == socket.EAI_AGAIN
    if isinstance(error, aiosmtplib.SMTPConnectError) and error.__cause__ is not None:
        return is_transient(error.__cause__)  # aiosmtplib wraps the OSError of the connect
    if isinstance(error, (TimeoutError, ConnectionError, aiosmtplib.SMTPServerDisconnected)):
        return True  # (SMTPConnectError and SMTPTimeoutError are among them)
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


def failure(server: MailServer, what: str, error: BaseException, hint: str) -> RendezvousError:
    """The one-line error for a failed connection; TransientMailError when retrying may help."""
    kind = TransientMailError if is_transient(error) else RendezvousError
    return kind(describe_failure(server, what, error), hint=hint)


def describe_failure(server: MailServer, what: str, error: BaseException) -> str:
    """One line for a failed mail connection: unreachable, untrusted certificate, or a refused login."""
    where = f"{what} server {server.host}:{server.port}"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        return f"{where}: TLS certificate not trusted ({error.args[-1] if error.args else text})"
    if isinstance(error, ssl.SSLError):
        return f"{where}: TLS failed ({text})"
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused) and error.recipients:
        error = error.recipients[0]
    if isinstance(error, aiosmtplib.SMTPResponseException):  # str() of these is a tuple
        return f"{where}: {error.code} {error.message.splitlines()[0] if error.message else ''}".rstrip()
    if isinstance(error, aiosmtplib.SMTPConnectError) and isinstance(error.__cause__, OSError):
        error = error.__cause__
    if isinstance(error, TimeoutError):
        return f"{where}: no answer (timed out)"
    if isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS:  # not asyncio's "Connect call failed"
        return f"{where}: {os.strerror(error.errno).lower()}"
    return f"{where}: {text}"


async def send_mail(config: EmailRendezvous, password: str, message: EmailMessage,
                    context: ssl.SSLContext, timeout: float = SMTP_TIMEOUT) -> None:
    """Submit one mail (a fresh connection: offers are rare, and this survives server restarts). ``timeout``
    bounds each step (connect, TLS, every command). TransientMailError when another try may help."""
    server = config.smtp
    try:
        await aiosmtplib.send(message, hostname=server.host, port=server.port, username=config.login,
                              password=password, use_tls=server.tls == "implicit",
                              start_tls=server.tls == "starttls", tls_context=context, timeout=timeout)
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        raise _send_failure(config, message, error) from error


def _send_failure(config: EmailRendezvous, message: EmailMessage, error: BaseException) -> RendezvousError:
    server = config.smtp
    if not is_transient(error):
        where = f"SMTP server {server.host}:{server.port}"
        if isinstance(error, aiosmtplib.SMTPAuthenticationError):
            reply = f"{error.code} {error.message.splitlines()[0] if error.message else ''}".rstrip()
            return RendezvousError(f"{where} rejected the login {config.login!r} ({reply})",
                                   hint="check rendezvous.email.login and password")
        if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
            return RendezvousError(f"{describe_failure(server, 'SMTP', error)} (recipient {message['To']})",
                                   hint="check peers[].address")
    cause = error.__cause__ if isinstance(error.__cause__, ssl.SSLError) else error
    return failure(server, "SMTP", cause, tls_hint(cause))


def tls_hint(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
        return "set rendezvous.email.ca to the CA file that signs the server's certificate"
    return "check the host, port and tls mode in the profile, and that the server is up"
