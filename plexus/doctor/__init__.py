"""``plexus doctor``'s checks: everything short of a real connection, one ``Check`` per item.

Profile valid; SMTP reachable with verified TLS and the login accepted; IMAP opened as the inbox opens it, plus
IDLE; the authentication material (S/MIME certificate and key match, validity, peer certificates; or the PSK);
the DHT identity and bootstrap nodes; STUN reachable and the NAT suitable for punching; each TURN relay grants
an allocation; the payload program installed. A failure is one line saying what to fix; nothing here prints a
traceback. The command itself (a table or JSON) is ``plexus.cli.doctor``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from plexus.doctor.auth import check_authentication
from plexus.doctor.check import Check, Status
from plexus.doctor.local import check_payload, check_stun
from plexus.doctor.mail import check_imap, check_smtp
from plexus.doctor.relay import check_relay
from plexus.errors import PlexusError
from plexus.profile.model import Profile

__all__ = ["Check", "Status", "check_authentication", "check_dht", "check_imap", "check_payload", "check_relay",
           "check_smtp", "check_stun", "run_checks"]


async def check_dht(profile: Profile) -> list[Check]:
    try:
        from plexus.doctor.dht import check_dht as dht_checks
    except ImportError as error:
        return [Check("DHT", "n/a", f"not available in this build ({error})", "pip install 'plexus[dht]'")]
    return await dht_checks(profile)


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
            from plexus.rendezvous.email.mail import tls_context

            context = tls_context(config.ca)
            network += [check_smtp(config, password, context), check_imap(config, password)]
        except PlexusError as error:
            checks.append(Check("mail CA", "fail", error.message, error.hint))
    elif profile.rendezvous.dht is None:
        checks.append(Check("rendezvous", "fail", "neither rendezvous.email nor rendezvous.dht is set",
                            "add rendezvous.email"))
    if profile.rendezvous.dht is not None:
        network.append(check_dht(profile))
    network += [check_relay(profile), check_stun(profile)]
    results = await asyncio.gather(*network)
    for result in results[:-2]:
        checks += result
    checks += await check_authentication(profile)
    checks += results[-1] + results[-2]
    checks += check_payload(profile)
    return checks
