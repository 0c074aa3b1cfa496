"""Small mail clients the lab tests and benchmarks run inside a site (``python3 -m plexus.lab.probes ...``),
with TLS verified against the lab CA. They print JSON lines so a test can read them.

    send --to bob [--subject S] [--port 465|587]     alice's mail (login = $PLEXUS_LAB_LOGIN or the site user)
    idle [--count N] [--timeout S]                    IMAP IDLE; prints {"ready": ...} then {"exists": n, "t": ...}
    capability [--host H]                             the IMAP CAPABILITY after login
    login [--host H] [--password P]                   {"ok": true|false} for an IMAP login
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
import time
from email.message import EmailMessage

import aioimaplib
import aiosmtplib

from plexus.lab.topology import IMAPS_PORT, MAIL_DOMAIN, MAIL_HOST, SMTPS_PORT


def _context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ["PLEXUS_LAB_CA"])


def _emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def send(login: str, password: str, to: str, subject: str, *, host: str = MAIL_HOST,
               port: int = SMTPS_PORT) -> float:
    """Send one mail through submission (465 implicit TLS, else STARTTLS) with AUTH; returns when done."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = f"{login}@{MAIL_DOMAIN}", f"{to}@{MAIL_DOMAIN}", subject
    message.set_content("plexus lab probe\n")
    await aiosmtplib.send(message, hostname=host, port=port, username=login, password=password,
                          use_tls=port == SMTPS_PORT, start_tls=port != SMTPS_PORT, tls_context=_context(),
                          timeout=10)
    return time.time()


async def _login(login: str, password: str, host: str) -> aioimaplib.IMAP4_SSL:
    client = aioimaplib.IMAP4_SSL(host=host, port=IMAPS_PORT, ssl_context=_context(), timeout=10)
    await client.wait_hello_from_server()
    response = await client.login(login, password)
    if response.result != "OK":
        raise PermissionError(f"IMAP login refused: {response.result}")
    return client


async def idle(login: str, password: str, *, count: int, timeout: float, host: str = MAIL_HOST) -> None:
    """Report each new message seen by IMAP IDLE (``* N EXISTS``) with its arrival time, ``count`` times."""
    client = await _login(login, password, host)
    await client.select("INBOX")
    deadline = time.monotonic() + timeout
    seen = 0
    idle_task = await client.idle_start(timeout=max(1.0, timeout))
    _emit(ready=True, t=time.time())
    while seen < count and time.monotonic() < deadline:
        try:
            lines = await client.wait_server_push(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        now = time.time()
        for line in lines if isinstance(lines, list) else [lines]:
            text = line.decode() if isinstance(line, bytes) else str(line)
            if text.endswith("EXISTS"):
                seen += 1
                _emit(exists=int(text.split()[0]), t=now)
    client.idle_done()
    await asyncio.wait_for(idle_task, 5)
    await client.logout()


async def capability(login: str, password: str, host: str) -> list[str]:
    client = await _login(login, password, host)
    await client.protocol.capability()  # a fresh CAPABILITY command, after login
    words = sorted(client.protocol.capabilities)
    await client.logout()
    return words


async def login_ok(login: str, password: str, host: str) -> bool:
    try:
        client = await _login(login, password, host)
    except PermissionError:
        return False
    await client.logout()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m plexus.lab.probes")
    parser.add_argument("--login", default=os.environ.get("PLEXUS_LAB_LOGIN"))
    parser.add_argument("--password", default=os.environ.get("PLEXUS_MAIL_PASSWORD"))
    parser.add_argument("--host", default=MAIL_HOST)
    sub = parser.add_subparsers(dest="probe", required=True)
    p = sub.add_parser("send")
    p.add_argument("--to", required=True)
    p.add_argument("--subject", default="plexus lab probe")
    p.add_argument("--port", type=int, default=SMTPS_PORT)
    p = sub.add_parser("idle")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("capability")
    sub.add_parser("login")
    args = parser.parse_args(argv)
    if not args.login or args.password is None:
        print("probes: need --login/--password (or PLEXUS_LAB_LOGIN/PLEXUS_MAIL_PASSWORD)", file=sys.stderr)
        return 2
    try:
        if args.probe == "send":
            started = time.time()
            done = asyncio.run(send(args.login, args.password, args.to, args.subject, host=args.host,
                                    port=args.port))
            _emit(sent=True, started=started, t=done)
        elif args.probe == "idle":
            asyncio.run(idle(args.login, args.password, count=args.count, timeout=args.timeout, host=args.host))
        elif args.probe == "capability":
            _emit(capability=asyncio.run(capability(args.login, args.password, args.host)))
        else:
            _emit(ok=asyncio.run(login_ok(args.login, args.password, args.host)))
    except (TimeoutError, OSError, PermissionError, aiosmtplib.SMTPException) as error:
        _emit(error=f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
