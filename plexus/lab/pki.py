"""The lab's PKI, made fresh at ``lab up``: a CA, the mail server's TLS certificate, and an S/MIME certificate
and key per user (RSA 2048: cryptography's PKCS7 envelope encrypts only to RSA keys)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)  # doctor warns on certificates that expire within 30 days


def _write_key(path: Path, key: CertificateIssuerPrivateKeyTypes) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY))


def make_pki(directory: Path, *, lab: str, users: list[str], domain: str, server_name: str,
             server_ips: list[str]) -> None:
    """Write ca.crt/ca.key, mail.crt/mail.key and <user>.crt/<user>.key into ``directory``."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "plexus lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"plexus lab {lab} CA")])
    ca_cert = (_builder(ca_name, ca_name, ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    _write_key(directory / "ca.key", ca_key)
    _write_cert(directory / "ca.crt", ca_cert)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(server_name)]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
    server_cert = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]), ca_name,
                            server_key.public_key())
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                   .add_extension(authority, critical=False)
                   .sign(ca_key, hashes.SHA256()))
    _write_key(directory / "mail.key", server_key)
    _write_cert(directory / "mail.crt", server_cert)

    for user in users:
        address = f"{user}@{domain}"
        user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user),
                             x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)])
        user_cert = (_builder(subject, ca_name, user_key.public_key())
                     .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                                  key_encipherment=True, data_encipherment=False,
                                                  key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
                     .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                    critical=False)
                     .add_extension(authority, critical=False)
                     .sign(ca_key, hashes.SHA256()))
        _write_key(directory / f"{user}.key", user_key)
        _write_cert(directory / f"{user}.crt", user_cert)
