"""A mail server that stops answering (as dovecot can after a crash, waiting on a stale lock) must not hang the
inbox: opening fails with one line within its deadline. The server here is a few lines of asyncio on
loopback that answers IMAP until the chosen command, then stays silent."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.tls import self_signed

from plexus.errors import RendezvousError
from plexus.profile.model import EmailRendezvous, ImapServer, MailServer, SecretRef
from plexus.rendezvous.email import inbox as inbox_module
from plexus.rendezvous.email.inbox import Inbox


@pytest.fixture
async def stalling_server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Path]]:
    stall_at: bytes = request.param
    cert, key = self_signed(tmp_path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        while line := await reader.readline():
            tag, command = [*line.strip().split(b" ", 2), b""][:2]
            if command.upper() == stall_at:
                await asyncio.sleep(3600)
            if command == b"CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1 IDLE UIDPLUS\r\n" + tag + b" OK done\r\n")
            elif command == b"SELECT":
                writer.write(b"* OK [UIDVALIDITY 5] ok\r\n" + tag + b" OK [READ-WRITE] done\r\n")
            else:
                writer.write(tag + b" OK done\r\n")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    yield server.sockets[0].getsockname()[1], cert
    server.close()


@pytest.mark.parametrize("stalling_server", [b"CAPABILITY", b"LOGIN", b"SELECT"], indirect=True)
async def test_open_gives_up_on_a_silent_server(stalling_server: tuple[int, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    port, cert = stalling_server
    monkeypatch.setattr(inbox_module, "COMMAND_TIMEOUT", 0.5)
    monkeypatch.setattr(inbox_module, "OPEN_TIMEOUT", 1.5)
    config = EmailRendezvous(MailServer("127.0.0.1", 1), ImapServer("127.0.0.1", port), "bob",
                             SecretRef("inline", "pw"), ca=cert)
    started = time.monotonic()
    with pytest.raises(RendezvousError, match=r"IMAP server 127.0.0.1:\d+: no answer"):
        await asyncio.wait_for(Inbox(config, "pw", "bob").open(), 10)
    assert time.monotonic() - started < 3
