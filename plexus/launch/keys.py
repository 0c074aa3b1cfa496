"""Per-session key material a payload template declares under ``keys``: generated fresh for every session,
never stored beyond the session's run directory, so no static key ever ships with plexus.

Each generator returns a dict of strings. The names a template may use and whether they are secret:

- ``wireguard``: ``private`` (secret), ``public`` (base64 X25519 keys, the ``wg`` format)
- ``tls-cert``: ``cert`` (PEM), ``key`` (PEM, secret), ``fingerprint`` (SHA-256 of the DER cert, ``AA:BB:..``)
- ``random-hex``: ``value`` (secret, 32 random bytes in hex)
- ``quic-cert``: ``cert`` (PEM), ``key`` (PEM, secret), ``fingerprint`` (``sha256:<hex>`` of the DER cert): the
  built-in ``forward`` payload's QUIC identity (EC P-256, ``plexus.forward.certs``)
"""

from __future__ import annotations

import base64
import datetime
import secrets
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

PAYLOAD_KEY_INFO = b"plexus payload key"

# Which generated values are secret (masked when printed, never exported).
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "wireguard": frozenset({"private"}),
    "tls-cert": frozenset({"key"}),
    "random-hex": frozenset({"value"}),
    "quic-cert": frozenset({"key"}),
}

# The peer's clock may be behind ours; the fingerprint, not the validity window, is what authenticates.
_CLOCK_SKEW = datetime.timedelta(days=1)
_CERT_LIFETIME = datetime.timedelta(days=3650)


def wireguard_keypair() -> dict[str, str]:
    private = X25519PrivateKey.generate()
    private_raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public_raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "private": base64.b64encode(private_raw).decode(),
        "public": base64.b64encode(public_raw).decode(),
    }


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of the DER certificate as ``AA:BB:..`` (the form ``openvpn --peer-fingerprint`` takes)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def self_signed_cert(common_name: str = "plexus") -> dict[str, str]:
    """A fresh Ed25519 key and a self-signed certificate for it; the peer pins it by fingerprint."""
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _CERT_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, algorithm=None)
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "cert": cert_pem,
        "key": key_pem,
        "fingerprint": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    }


def random_hex() -> dict[str, str]:
    return {"value": secrets.token_hex(32)}


def quic_identity() -> dict[str, str]:
    from plexus.forward.certs import Identity  # only for the forward payload: keeps this module light

    identity = Identity.generate()
    return {"cert": identity.certificate.public_bytes(serialization.Encoding.PEM).decode(),
            "key": identity.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()).decode(),
            "fingerprint": identity.fingerprint}


GENERATORS: dict[str, Callable[[], dict[str, str]]] = {
    "wireguard": wireguard_keypair,
    "tls-cert": self_signed_cert,
    "random-hex": random_hex,
    "quic-cert": quic_identity,
}

KINDS = tuple(GENERATORS)


def generate(kind: str) -> dict[str, str]:
    return GENERATORS[kind]()


def payload_key(secret: bytes) -> bytes:
    """The key a payload may use (e.g. a pre-shared key), derived from the session secret so that the
    secret itself need not be handed to the payload."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PAYLOAD_KEY_INFO).derive(secret)
