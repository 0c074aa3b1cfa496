"""Sending an offer through a submission server that is restarting (connection refused) or busy (4xx) is retried
with backoff within the rendezvous timeout; a permanent failure (5xx, a refused login, an untrusted certificate)
fails at once. The server is a few lines of asyncio SMTP over TLS on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from support.rendezvous import make_profile
from support.tls import self_signed

from plexus.errors import RendezvousError
from plexus.profile.model import EmailRendezvous, ImapServer, MailServer, Peer, SecretRef
from plexus.rendezvous.email.carrier import EmailCarrier
from plexus.rendezvous.email.mail import TransientMailError, is_transient

BOB = Peer("bob", "bob@plexus.test")

# -- the classification ----------------------------------------------------------------------------------------


def _connect_error(cause: BaseException) -> aiosmtplib.SMTPConnectError:
    """As aiosmtplib raises it: the OSError of the connect as the cause."""
    try:
        raise aiosmtplib.SMTPConnectError(f"Error connecting to h on port 1: {cause}") from cause
    except aiosmtplib.SMTPConnectError as error:
        return error


def _verify_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message = "self-signed certificate"
    return error


@pytest.mark.parametrize(("error", "transient"), [
    (_connect_error(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")), True),
    (ConnectionRefusedError(111, "Connect call failed"), True),
    (_connect_error(ConnectionResetError(104, "reset")), True),
    (_connect_error(OSError(113, "No route to host")), True),
    (_connect_error(aiosmtplib.SMTPServerDisconnected("closed before the greeting")), True),
    (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), True),
    (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for a reply"), True),
    (aiosmtplib.SMTPServerDisconnected("Connection lost"), True),
    (TimeoutError(), True),
    (aiosmtplib.SMTPConnectResponseError(421, "Service not available, try later"), True),
    (aiosmtplib.SMTPResponseException(451, "Local error, try later"), True),
    (aiosmtplib.SMTPSenderRefused(452, "Insufficient storage", "a@x"), True),
    (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(450, "greylisted", "b@x")]), True),
    (aiosmtplib.SMTPAuthenticationError(454, "Temporary authentication failure"), True),
    (_connect_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")), True),
    # permanent
    (aiosmtplib.SMTPConnectResponseError(554, "No SMTP service here"), False),
    (aiosmtplib.SMTPResponseException(550, "Mailbox unavailable"), False),
    (aiosmtplib.SMTPAuthenticationError(535, "Authentication credentials invalid"), False),
    (aiosmtplib.SMTPSenderRefused(553, "Sender not allowed", "a@x"), False),
    (aiosmtplib.SMTPRecipientsRefused([aiosmtplib.SMTPRecipientRefused(550, "no such user", "b@x")]), False),
    (aiosmtplib.SMTPDataError(554, "Rejected as spam"), False),
    (_verify_error(), False),
    (_connect_error(_verify_error()), False),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), False),
    (_connect_error(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), False),
    (aiosmtplib.SMTPNotSupported("SMTP AUTH extension not supported by server."), False),
    (aiosmtplib.SMTPException("SMTP STARTTLS extension not supported by server."), False),
])
def test_transient_or_permanent(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


# -- a real server ---------------------------------------------------------------------------------------------

Reply = Callable[[int, bytes], bytes | None]  # (connection number, command) -> a reply to override, or None


@dataclass
class SmtpServer:
    port: int
    cert: Path
    reply: Reply = lambda _number, _command: None
    connections: int = 0
    delivered: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.cert.with_suffix(".key"))
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=context)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections

        def answer(command: bytes, default: bytes) -> bool:
            reply = self.reply(number, command)
            writer.write((reply or default) + b"\r\n")
            return reply is None or not reply.startswith((b"4", b"5"))

        try:
            if not answer(b"CONNECT", b"220 test ESMTP"):
                return
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb == b"EHLO":
                    answer(verb, b"250-test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME")
                elif verb == b"AUTH":
                    answer(verb, b"235 ok")
                elif verb == b"DATA":
                    if answer(verb, b"354 go on"):
                        data = await reader.readuntil(b"\r\n.\r\n")
                        if answer(b"DOT", b"250 queued"):
                            self.delivered.append(data)
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    answer(verb, b"250 ok")
                await writer.drain()
        finally:
            writer.close()


def _free_port() -> int:
    """A port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[SmtpServer]:
    cert, _key = self_signed(tmp_path)
    server = SmtpServer(_free_port(), cert)
    yield server
    server.close()


def carrier_for(server: SmtpServer, *, timeout: float = 10.0, ca: Path | None = None) -> EmailCarrier:
    email = EmailRendezvous(MailServer("127.0.0.1", server.port), ImapServer("127.0.0.1", 1), "alice",
                            SecretRef("inline", "pw"), ca=ca or server.cert)
    profile: Any = make_profile("alice", [("bob", None)], role="initiate", email=email, timeout=timeout)
    return EmailCarrier(profile)


async def test_a_send_to_a_restarting_server_is_delivered_when_it_is_back(smtp: SmtpServer) -> None:
    carrier = carrier_for(smtp)

    async def come_up_later() -> None:
        await asyncio.sleep(1.0)  # until then, connecting is refused
        await smtp.start()

    started = time.monotonic()
    later = asyncio.ensure_future(come_up_later())
    await asyncio.wait_for(carrier.publish(BOB, b'{"offer": 1}', "application/json"), 10)
    await later
    assert len(smtp.delivered) == 1 and b"X-Plexus-Offer: 1" in smtp.delivered[0]
    assert 1.0 < time.monotonic() - started < 3.0


async def test_a_busy_server_is_tried_again_and_a_5xx_is_not(smtp: SmtpServer) -> None:
    smtp.reply = lambda number, command: {1: b"421 busy, try later", 2: b"550 mailbox unavailable"}.get(number) \
        if command == b"MAIL" else None
    await smtp.start()
    carrier = carrier_for(smtp)
    started = time.monotonic()
    with pytest.raises(RendezvousError) as caught:
        await carrier.publish(BOB, b'{"offer": 1}', "application/json")
    assert type(caught.value) is RendezvousError  # permanent
    assert caught.value.message == f"SMTP server 127.0.0.1:{smtp.port}: 550 mailbox unavailable"
    assert smtp.connections == 2 and not smtp.delivered
    assert time.monotonic() - started < 2.0


async def test_an_untrusted_certificate_fails_at_once(smtp: SmtpServer, tmp_path: Path) -> None:
    await smtp.start()
    (tmp_path / "other").mkdir()
    other, _ = self_signed(tmp_path / "other")  # a CA that did not sign the server's certificate
    carrier = carrier_for(smtp, ca=other)  # retrying would go on for 5 s (half the rendezvous timeout)
    started = time.monotonic()
    with pytest.raises(RendezvousError, match="TLS certificate not trusted") as caught:
        await carrier.publish(BOB, b'{"offer": 1}', "application/json")
    assert type(caught.value) is RendezvousError and time.monotonic() - started < 1.0


async def test_retrying_ends_inside_the_rendezvous_timeout(smtp: SmtpServer) -> None:
    carrier = carrier_for(smtp, timeout=2.0)  # nothing ever listens
    started = time.monotonic()
    with pytest.raises(TransientMailError, match=r"connection refused \(gave up after \d+ tries in") as caught:
        await carrier.publish(BOB, b'{"offer": 1}', "application/json")
    assert time.monotonic() - started < 2.0
    assert "did not answer" not in str(caught.value)
