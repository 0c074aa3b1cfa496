"""Helpers for the rendezvous tests (no tests here): a throw-away S/MIME PKI made with cryptography, and
profiles built directly from the dataclasses."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DOMAIN = "plexus.test"


@dataclass
class User:
    name: str
    certificate: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _save(directory: Path, stem: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> User:
    certificate_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    certificate_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return User(stem, certificate_path, key_path)


class Pki:
    def __init__(self, directory: Path, ca_name: str = "plexus test CA") -> None:
        self.directory = directory
        self.ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(_name(ca_name)).issuer_name(_name(ca_name))
            .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256()))
        self.ca_path = directory / f"{ca_name.replace(' ', '-')}.crt"
        self.ca_path.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))

    def user(self, name: str, *, days: int = 365, self_signed: bool = False, stem: str | None = None) -> User:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.UTC)
        address = f"{name}@{DOMAIN}"
        issuer_key = key if self_signed else self.ca_key
        builder = (
            x509.CertificateBuilder().subject_name(_name(name))
            .issuer_name(_name(name) if self_signed else self.ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False))
        return _save(self.directory, stem or name, key, builder.sign(issuer_key, hashes.SHA256()))


def make_profile(name: str, peers: list[tuple[str, Path | None]], *, method: str = "psk", role: str = "accept",
                 user: User | None = None, ca: Path | None = None, psk: str = "correct horse battery staple",
                 email: object = None, timeout: float = 10.0, max_age: float = 120.0, skew: float = 120.0,
                 address: str | None = None) -> object:
    """A Profile built directly (no loader): host ``name``, ``peers`` as (id, certificate)."""
    from plexus.profile.model import (
        Authentication,
        Host,
        Payload,
        Peer,
        Profile,
        Rendezvous,
        SecretRef,
        Stun,
    )

    authentication = Authentication(
        method=method,  # type: ignore[arg-type]
        certificate=user.certificate if user else None, key=user.key if user else None, ca=ca,
        psk=SecretRef("inline", psk) if method == "psk" else None)
    return Profile(
        name=name, host=Host(name, address or f"{name}@{DOMAIN}"), role=role,  # type: ignore[arg-type]
        peers=tuple(Peer(peer, f"{peer}@{DOMAIN}", certificate) for peer, certificate in peers),
        rendezvous=Rendezvous(authentication, email=email, timeout=timeout, max_age=max_age,  # type: ignore[arg-type]
                              skew=skew),
        stun=Stun(()), payload=Payload("socat"))
