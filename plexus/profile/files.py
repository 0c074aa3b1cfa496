"""Files a profile names: they exist and are readable; certificates parse and are valid now; our S/MIME key
is unencrypted and belongs to our certificate; secret and key files are not readable by others."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path
from typing import Any

from plexus.profile.document import Document
from plexus.profile.fields import get, peers, read_small, readable_file, resolve_path, secret_paths
from plexus.profile.problems import FieldPath

EXPIRY_WARNING = datetime.timedelta(days=14)


def check_files(document: Document) -> None:
    data = document.data
    smime = ("rendezvous", "smime")
    method = get(data, ("rendezvous", "authentication"), str)
    certificate = _certificate_at(document, (*smime, "certificate"), "certificate")
    key_text = get(data, (*smime, "key"), str)
    if key_text is not None:
        key_file = readable_file(document, (*smime, "key"), key_text, "key")
        if key_file is not None:
            _check_key(document, (*smime, "key"), key_file, certificate)
    _certificate_at(document, (*smime, "ca"), "CA certificate", many=True)
    _certificate_at(document, ("rendezvous", "email", "ca"), "CA certificate", many=True)
    for index, _peer in peers(data):
        cert = _certificate_at(document, ("peers", index, "certificate"), "certificate")
        if cert is not None and method == "smime" and not _is_rsa(cert):
            document.problem(("peers", index, "certificate"), "S/MIME can only encrypt to an RSA certificate",
                             "give this peer an RSA certificate")
    for index, _server in enumerate(get(data, ("relay", "servers"), list) or []):
        _certificate_at(document, ("relay", "servers", index, "ca"), "CA certificate", many=True)
    for secret in secret_paths(data):
        text = get(data, (*secret, "file"), str)
        if text is not None:
            file = readable_file(document, (*secret, "file"), text, "secret file")
            if file is not None:
                _warn_if_shared(document, (*secret, "file"), file)
    keys = get(data, ("rendezvous", "dht", "keys"), str)
    if keys is not None and not _is_dir(resolve_path(document, ("rendezvous", "dht", "keys"), keys)):
        document.problem(("rendezvous", "dht", "keys"), "the DHT identity does not exist yet",
                         "plexus keygen PROFILE creates it", severity="warning")


def _certificate_at(document: Document, path: FieldPath, what: str, many: bool = False) -> Any:
    """The (first) certificate in the file named at ``path``, checked; None if absent or broken."""
    text = get(document.data, path, str)
    if text is None:
        return None
    file = readable_file(document, path, text, what)
    if file is None:
        return None
    raw = read_small(document, path, file)
    if raw is None:
        return None
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(raw) if b"-----BEGIN" in raw else \
            [x509.load_der_x509_certificate(raw)]
    except ValueError:
        document.problem(path, f"{file} is not a certificate (PEM or DER)",
                         "a PEM certificate starts with -----BEGIN CERTIFICATE-----")
        return None
    if len(certificates) > 1 and not many:
        document.problem(path, f"{file} holds {len(certificates)} certificates; give exactly one")
    now = datetime.datetime.now(datetime.UTC)
    for certificate in certificates:
        subject = certificate.subject.rfc4514_string() or "(no subject)"
        if certificate.not_valid_after_utc < now:
            document.problem(path, f"certificate {subject} in {file.name} expired on "
                             f"{certificate.not_valid_after_utc:%Y-%m-%d}", "renew it")
        elif certificate.not_valid_before_utc > now:
            document.problem(path, f"certificate {subject} in {file.name} is not valid before "
                             f"{certificate.not_valid_before_utc:%Y-%m-%d}", "check the clock or the certificate")
        elif certificate.not_valid_after_utc - now < EXPIRY_WARNING:
            document.problem(path, f"certificate {subject} in {file.name} expires on "
                             f"{certificate.not_valid_after_utc:%Y-%m-%d}", "renew it soon", severity="warning")
    return certificates[0]


def _check_key(document: Document, path: FieldPath, file: Path, certificate: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    raw = read_small(document, path, file)
    if raw is None:
        return
    try:
        key = serialization.load_pem_private_key(raw, password=None, unsafe_skip_rsa_key_validation=True) \
            if b"-----BEGIN" in raw else serialization.load_der_private_key(raw, password=None)
    except TypeError:
        document.problem(path, f"{file} is encrypted; plexus needs the key unencrypted",
                         f"openssl pkey -in {file.name} -out {file.stem}-plain.key, then chmod 600 it")
        return
    except Exception:  # ValueError, UnsupportedAlgorithm, ...: whatever cryptography raises for junk
        document.problem(path, f"{file} is not a private key (PEM or DER)",
                         "a PEM key starts with -----BEGIN PRIVATE KEY-----")
        return
    _warn_if_shared(document, path, file)
    if certificate is None:
        return
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        document.problem(path, f"{file.name} is not the key of rendezvous.smime.certificate",
                         "give the key that belongs to our certificate")


def _is_rsa(certificate: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return isinstance(certificate.public_key(), rsa.RSAPublicKey)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _warn_if_shared(document: Document, path: FieldPath, file: Path) -> None:
    try:
        mode = file.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        document.problem(path, f"{file} can be read by other users", f"chmod 600 {file}", severity="warning")
