#!/usr/bin/env python3
"""Write the example S/MIME identities the example profiles name: a self-signed RSA certificate and key per
machine, valid for 100 years so that the examples keep validating. EXAMPLES ONLY: these keys are public.

    python3 profiles/examples/certs/make-certs.py   # rewrites *.crt and *.key next to this script
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IDENTITIES = {"home": "home@example.org", "laptop": "laptop@example.org", "phone": "phone@example.org"}
HERE = Path(__file__).resolve().parent


def make(name: str, address: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"plexus example {name}"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)])
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=36500))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (HERE / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file = HERE / f"{name}.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_file, 0o600)


if __name__ == "__main__":
    for name, address in IDENTITIES.items():
        make(name, address)
        print(f"wrote {HERE / name}.crt and .key")
