"""``plexus doctor PROFILE``: check everything short of a real connection, one row per check.

Profile valid; SMTP reachable with verified TLS and the login accepted; IMAP the same, plus IDLE; the
authentication material (S/MIME certificate and key match, validity, peer certificates; or the PSK); STUN
reachable and the NAT suitable for punching; the payload program installed. A failure is one line saying what
to fix; nothing here prints a traceback. Exit 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import shutil
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Literal

import aioimaplib
import aiosmtplib

from plexus.errors import PlexusError
from plexus.profile.model import EmailRendezvous, Profile

Status = Literal["ok", "warn", "fail", "n/a"]
NETWORK_TIMEOUT = 10.0
EXPIRY_WARNING = datetime.timedelta(days=30)


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None


def _one_line(error: BaseException) -> str:
    text = str(error).replace("\n", " ").strip()
    return text or type(error).__name__


# -- mail ------------------------------------------------------------------------------------------------------

async def check_smtp(config: EmailRendezvous, password: str | None, context: ssl.SSLContext) -> list[Check]:
    from plexus.rendezvous.mail import describe_failure

    server = config.smtp
    where = f"{server.host}:{server.port} ({server.tls})"
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, use_tls=server.tls == "implicit",
                             start_tls=server.tls == "starttls", tls_context=context, timeout=NETWORK_TIMEOUT)
    try:
        await client.connect()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        cause = error.__cause__ if isinstance(error.__cause__, ssl.SSLError) else error
        return [Check("SMTP server", "fail", describe_failure(server, "SMTP", cause), _tls_fix(cause))]
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
        checks.append(Check("SMTP login", "fail", f"{where}: {_one_line(error)}", "check the server's AUTH setup"))
    finally:
        try:
            await asyncio.wait_for(client.quit(), 2)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
    return checks


async def check_imap(config: EmailRendezvous, password: str | None, context: ssl.SSLContext) -> list[Check]:
    from plexus.rendezvous.mail import describe_failure

    server = config.imap
    where = f"{server.host}:{server.port} ({server.tls})"
    if server.tls != "implicit":
        return [Check("IMAP server", "n/a", f"{where}: doctor checks IMAP with implicit TLS only",
                      "use tls: implicit (port 993) if the server offers it")]
    client = aioimaplib.IMAP4_SSL(server.host, server.port, ssl_context=context, timeout=NETWORK_TIMEOUT)
    try:
        await client.wait_hello_from_server()
    except (OSError, TimeoutError, aioimaplib.AioImapException) as error:
        return [Check("IMAP server", "fail", describe_failure(server, "IMAP", error), _tls_fix(error))]
    checks = [Check("IMAP server", "ok", f"{where}, TLS verified")]
    try:
        if password is None:
            return [*checks, Check("IMAP login", "n/a", "no password (see the password check)")]
        response = await client.login(config.login, password)
        if response.result != "OK":
            return [*checks, Check("IMAP login", "fail", f"{where} rejected the login {config.login!r}",
                                   "check rendezvous.email.login and password")]
        checks.append(Check("IMAP login", "ok", f"{config.login} accepted"))
        await asyncio.wait_for(client.protocol.capability(), NETWORK_TIMEOUT)
        selected = await client.select(config.folder)
        if selected.result != "OK":
            checks.append(Check("IMAP folder", "fail", f"folder {config.folder!r} cannot be selected",
                                "check rendezvous.email.folder"))
        checks.append(_idle_check(server.idle, client.has_capability("IDLE"), server.poll))
        if not client.has_capability("UIDPLUS"):
            checks.append(Check("IMAP UIDPLUS", "warn", "no UIDPLUS: processed offers are flagged \\Deleted "
                                "but not expunged (plexus never expunges other mail)", None))
    except (OSError, TimeoutError, aioimaplib.AioImapException) as error:
        checks.append(Check("IMAP session", "fail", f"{where}: {_one_line(error)}", None))
    finally:
        with contextlib.suppress(OSError, TimeoutError, aioimaplib.AioImapException):
            await asyncio.wait_for(client.logout(), 2)
    return checks


def _idle_check(wanted: bool, offered: bool, poll: float) -> Check:
    if wanted and offered:
        return Check("IMAP IDLE", "ok", "supported: offers arrive by push (answers are polled for, fast)")
    if not offered:
        return Check("IMAP IDLE", "warn", f"the server does not offer IDLE: plexus polls every {poll:g} s",
                     "lower rendezvous.email.imap.poll for quicker invites")
    return Check("IMAP IDLE", "ok", f"off in the profile: plexus polls every {poll:g} s")


def _tls_fix(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
        return "set rendezvous.email.ca to the CA file that signs the server's certificate"
    return "check the host, port and tls mode in the profile, and that the server is up"


# -- authentication --------------------------------------------------------------------------------------------

async def check_authentication(profile: Profile) -> list[Check]:
    from plexus.profile.secrets import fetch

    auth = profile.rendezvous.authentication
    if auth.method == "none":
        return [Check("authentication", "warn", "none: anyone who can mail this mailbox can pose as a peer",
                      "use authentication: smime or psk")]
    if auth.method == "psk":
        try:
            value = await fetch(auth.psk) if auth.psk else ""  # a command: not blocking, Ctrl-C works
        except PlexusError as error:
            return [Check("pre-shared key", "fail", error.message, error.hint)]
        if len(value) < 16:
            return [Check("pre-shared key", "fail", "shorter than 16 characters", "use e.g. openssl rand -base64 32")]
        return [Check("pre-shared key", "ok", f"{len(value)} characters ({auth.psk.describe() if auth.psk else ''})")]
    return _check_smime(profile)


def _check_smime(profile: Profile) -> list[Check]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from plexus.rendezvous import smime

    auth = profile.rendezvous.authentication
    if auth.certificate is None or auth.key is None:
        return [Check("S/MIME certificate", "fail", "no certificate or key", "set rendezvous.smime.certificate/key")]
    checks: list[Check] = []
    try:
        identity = smime.load_identity(auth.certificate, auth.key)
        checks.append(_validity("S/MIME certificate", identity.certificate, "key matches"))
        if not isinstance(identity.key, rsa.RSAPrivateKey):
            checks.append(Check("S/MIME key", "fail", "not an RSA key: peers cannot encrypt offers to it",
                                "use an RSA certificate and key"))
    except smime.SmimeError as error:
        checks.append(Check("S/MIME certificate", "fail", str(error), "fix rendezvous.smime.certificate/key"))
    authorities = []
    if auth.ca is not None:
        try:
            authorities = smime.load_certificates(auth.ca)
            checks.append(Check("S/MIME CA", "ok", f"{len(authorities)} certificate(s) in {auth.ca}"))
        except smime.SmimeError as error:
            checks.append(Check("S/MIME CA", "fail", str(error), "fix rendezvous.smime.ca"))
    for peer in profile.peers:
        name = f"peer {peer.id} certificate"
        if peer.certificate is None:
            state: Status = "ok" if authorities else "fail"
            checks.append(Check(name, state, "none: trusted through the S/MIME CA" if authorities else
                                "none, and no S/MIME CA to trust it by", None if authorities else
                                "set peers[].certificate or rendezvous.smime.ca"))
            continue
        try:
            certificate = smime.load_certificate(peer.certificate)
        except smime.SmimeError as error:
            checks.append(Check(name, "fail", str(error), "fix peers[].certificate"))
            continue
        check = _validity(name, certificate, "parses")
        if check.status == "ok" and not isinstance(certificate.public_key(), rsa.RSAPublicKey):
            check = Check(name, "fail", "not an RSA certificate: offers cannot be encrypted to it",
                          "the peer needs an RSA S/MIME certificate")
        checks.append(check)
    return checks


def _validity(name: str, certificate: object, good: str) -> Check:
    from cryptography import x509

    assert isinstance(certificate, x509.Certificate)
    from plexus.rendezvous.smime import names

    now = datetime.datetime.now(datetime.UTC)
    subject = " ".join(sorted(names(certificate), key=lambda name: "@" in name))[:60] or "certificate"
    until = certificate.not_valid_after_utc
    if now < certificate.not_valid_before_utc:
        return Check(name, "fail", f"{subject}: not valid before {certificate.not_valid_before_utc:%Y-%m-%d}",
                     "check the clock or the certificate")
    if now > until:
        return Check(name, "fail", f"{subject}: expired on {until:%Y-%m-%d}", "renew the certificate")
    days = (until - now).days
    if until - now < EXPIRY_WARNING:
        return Check(name, "warn", f"{subject}: expires in {days} days ({until:%Y-%m-%d})", "renew it soon")
    return Check(name, "ok", f"{subject}, {good}, valid until {until:%Y-%m-%d}")


async def check_dht(profile: Profile) -> list[Check]:
    try:
        from plexus.rendezvous.dht import check_dht as dht_checks
    except ImportError as error:
        return [Check("DHT", "n/a", f"not available in this build ({error})", "pip install 'plexus[dht]'")]
    return await dht_checks(profile)


# -- STUN, payload ---------------------------------------------------------------------------------------------

async def check_stun(profile: Profile) -> list[Check]:
    try:
        from plexus.nat import discover, punchable
        from plexus.udp import UdpPort
    except ImportError:
        return [Check("STUN", "n/a", "not available in this build")]
    if not profile.stun.servers:
        return [Check("STUN", "fail", "no STUN server configured", "set stun.servers")]
    from plexus.profile.model import Endpoint

    try:
        port = await UdpPort.bind(Endpoint(profile.stun.bind.host, 0))  # port 0: a running plexus may hold it
        try:
            found = await asyncio.wait_for(discover(port, profile.stun), NETWORK_TIMEOUT + profile.stun.timeout)
        finally:
            port.close()
    except PlexusError as error:
        return [Check("STUN", "fail", error.message, error.hint)]
    except TimeoutError:
        return [Check("STUN", "fail", "no STUN answer in time", "check stun.servers and UDP reachability")]
    outer = f"{found.outer[0]}:{found.outer[1]}"
    checks = [Check("STUN", "ok", f"{found.server} answered: public endpoint {outer}")]
    suitable, why = punchable(found.mapping)
    checks.append(Check("NAT", "ok" if suitable else "fail", f"{found.mapping}: {why.split(';')[0]}",
                        None if suitable else "see `plexus nat` for what would still work"))
    return checks


def check_payload(profile: Profile) -> list[Check]:
    finder: Callable[..., object] | None = None
    for module_name in ("plexus.launch.template", "plexus.launch.manifest"):
        try:
            module = __import__(module_name, fromlist=["find_template"])
            finder = getattr(module, "find_template", None)
        except ImportError:
            continue
        if finder is not None:
            break
    if finder is None:
        return [Check("payload", "n/a", "template support not available in this build")]
    try:
        template = finder(profile.payload.template, profile.path.parent if profile.path else None)
    except PlexusError as error:
        return [Check("payload template", "fail", error.message, error.hint or "fix payload.template")]
    argv = getattr(template, "argv", [])
    program = argv[0] if argv else ""
    if not program or "{" in program:
        return [Check("payload program", "warn", f"template {profile.payload.template!r}: program is computed "
                      "at launch", None)]
    found = shutil.which(program)
    if found is None:
        return [Check("payload program", "fail", f"{program} is not installed (template "
                      f"{profile.payload.template!r})", f"install {program}")]
    return [Check("payload program", "ok", f"{found} (template {profile.payload.template!r})")]


# -- running ---------------------------------------------------------------------------------------------------

async def run_checks(profile_name: str) -> list[Check]:
    from plexus.profile import load

    try:
        profile = load(profile_name)
    except PlexusError as error:
        return [Check("profile", "fail", error.message, error.hint)]
    checks = [Check("profile", "ok", f"{profile.name} ({profile.path or 'built in'}), role {profile.role}, "
                    f"{len(profile.peers)} peer(s)")]
    checks += [Check("profile warning", "warn", warning) for warning in profile.warnings]
    network: list[Awaitable[list[Check]]] = []
    config = profile.rendezvous.email
    if config is not None:
        from plexus.profile.secrets import fetch

        password = None
        try:
            password = await fetch(config.password)
        except PlexusError as error:
            checks.append(Check("mail password", "fail", error.message, error.hint))
        try:
            from plexus.rendezvous.mail import tls_context

            context = tls_context(config.ca)
            network += [check_smtp(config, password, context), check_imap(config, password, context)]
        except PlexusError as error:
            checks.append(Check("mail CA", "fail", error.message, error.hint))
    elif profile.rendezvous.dht is None:
        checks.append(Check("rendezvous", "fail", "neither rendezvous.email nor rendezvous.dht is set",
                            "add rendezvous.email"))
    if profile.rendezvous.dht is not None:
        network.append(check_dht(profile))
    network.append(check_stun(profile))
    results = await asyncio.gather(*network)
    for result in results[:-1]:
        checks += result
    checks += await check_authentication(profile)
    checks += results[-1]
    checks += check_payload(profile)
    return checks


def run_doctor(args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(args.profile))
    failed = any(check.status == "fail" for check in checks)
    if args.json:
        print(json.dumps({"profile": args.profile, "ok": not failed,
                          "checks": [asdict(check) for check in checks]}, indent=2))
    else:
        _print_table(checks)
    return 1 if failed else 0


def _print_table(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "n/a": "[dim]n/a[/]"}
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("")
    table.add_column("detail", overflow="fold")
    for check in checks:
        detail = check.detail + (f"  [dim]→ {check.fix}[/]" if check.fix and check.status != "ok" else "")
        table.add_row(check.name, marks[check.status], detail)
    Console().print(table)
