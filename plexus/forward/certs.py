"""The per-session identity of a forward session: a fresh self-signed certificate (EC P-256) and its key.

No CA is involved: each side puts ``fingerprint(cert)`` (sha256 of the DER) in its authenticated plexus offer,
and the QUIC connection is pinned to the peer's (``plexus.forward.quic``). The key never leaves the process.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = datetime.timedelta(days=2)  # a session identity; peers check the pin, not the dates
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")


def fingerprint(certificate: x509.Certificate) -> str:
    """``sha256:<64 hex digits>`` of the certificate's DER encoding."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def check_fingerprint(text: str) -> str:
    """The fingerprint in canonical form (lower case); ValueError with a one-line reason if it is not one."""
    canonical = text.strip().lower()
    if not _FINGERPRINT.fullmatch(canonical):
        raise ValueError(f"{text!r} is not a certificate fingerprint (sha256: and 64 hex digits)")
    return canonical


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key. ``Identity.generate()`` makes a fresh one."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @classmethod
    def generate(cls, name: str = "plexus-forward") -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))  # clocks differ; the pin is what counts
            .not_valid_after(now + VALIDITY)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)
