"""Offer mails: compose and parse them, send them with aiosmtplib, and the TLS context both mail clients use.

A plexus mail carries ``X-Plexus-Offer: 1`` (so that plexus searches, reads and deletes only its own mail) and
``X-Plexus-To: <recipient host id>`` (so that several plexus hosts can share one mailbox and each takes only its
own offers). The document travels base64-encoded as the single MIME body: ``application/pkcs7-mime`` (S/MIME) or
``application/json`` (psk, none).
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
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
                                  hint="fix rendezvous.email.ca") from None
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
    """A timeout or a dropped connection: worth another try (a lossy path, a server restarting)."""


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    return isinstance(error, (TimeoutError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError,
                              aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError))


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
    if isinstance(error, TimeoutError):
        return f"{where}: no answer (timed out)"
    return f"{where}: {text}"


async def send_mail(config: EmailRendezvous, password: str, message: EmailMessage,
                    context: ssl.SSLContext) -> None:
    """Submit one mail (a fresh connection: offers are rare, and this survives server restarts)."""
    server = config.smtp
    try:
        await aiosmtplib.send(message, hostname=server.host, port=server.port, username=config.login,
                              password=password, use_tls=server.tls == "implicit",
                              start_tls=server.tls == "starttls", tls_context=context, timeout=SMTP_TIMEOUT)
    except aiosmtplib.SMTPAuthenticationError:
        raise RendezvousError(f"SMTP server {server.host}:{server.port} rejected the login {config.login!r}",
                              hint="check rendezvous.email.login and password") from None
    except aiosmtplib.SMTPRecipientsRefused as error:
        raise RendezvousError(f"SMTP server {server.host}:{server.port} refused the recipient "
                              f"{message['To']}: {error}", hint="check peers[].address") from None
    except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
        cause = error.__cause__ if isinstance(error.__cause__, ssl.SSLError) else error
        raise failure(server, "SMTP", cause, _hint(cause)) from None


def _hint(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
        return "set rendezvous.email.ca to the CA file that signs the server's certificate"
    return "check the host, port and tls mode in the profile, and that the server is up"
