"""Doctor: the authentication material (S/MIME certificate and key match, validity, peer certificates; or the
pre-shared keys)."""

from __future__ import annotations

import datetime

from plexus.doctor.check import Check, Status
from plexus.errors import PlexusError
from plexus.profile.model import Profile

EXPIRY_WARNING = datetime.timedelta(days=30)


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
