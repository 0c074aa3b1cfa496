"""Our DHT identity: an RSA key and a self-signed certificate (`plexus keygen` makes them), and the DHT keys
derived from certificates.

The identity is an ordinary S/MIME identity, so the DHT carries offers sealed by the same ``auth`` layer as the
mailbox. Where it lives: ``rendezvous.smime.certificate`` / ``.key`` when the profile names them, else
``<rendezvous.dht.keys>/identity.crt`` / ``identity.key``. The peer's certificate is ``peers[].certificate``.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plexus.errors import ProfileError
from plexus.profile.model import Peer, Profile
from plexus.rendezvous import smime

CERTIFICATE_NAME = "identity.crt"
KEY_NAME = "identity.key"
KEY_BITS = 3072
VALIDITY = datetime.timedelta(days=5 * 365)


@dataclass(frozen=True)
class IdentityFiles:
    certificate: Path
    key: Path

    def exist(self) -> tuple[bool, bool]:
        return self.certificate.exists(), self.key.exists()


def identity_files(profile: Profile) -> IdentityFiles:
    """Where our identity is (or goes): the profile's S/MIME files, else the DHT key directory."""
    auth = profile.rendezvous.authentication
    if auth.certificate is not None and auth.key is not None:
        return IdentityFiles(auth.certificate, auth.key)
    dht = profile.rendezvous.dht
    if dht is not None and dht.keys is not None:
        return IdentityFiles(dht.keys / CERTIFICATE_NAME, dht.keys / KEY_NAME)
    raise ProfileError("rendezvous: no place for our DHT identity",
                       hint="set rendezvous.dht.keys (a directory; plexus keygen fills it) or rendezvous.smime")


def load_own(profile: Profile) -> smime.Identity:
    files = identity_files(profile)
    if not files.certificate.exists() and not files.key.exists():
        raise ProfileError(f"rendezvous: our DHT identity {files.certificate} does not exist yet",
                           hint=f"plexus keygen {profile.path or profile.name}")
    try:
        return smime.load_identity(files.certificate, files.key)
    except smime.SmimeError as error:
        raise ProfileError(f"rendezvous: {error}") from error


def peer_certificate(peer: Peer) -> x509.Certificate:
    if peer.certificate is None:
        raise ProfileError(f"peers: {peer.id!r} has no certificate: the DHT rendezvous finds and encrypts to a "
                           "peer by its certificate", hint="copy the peer's identity.crt and set peers[].certificate")
    try:
        return smime.load_certificate(peer.certificate)
    except smime.SmimeError as error:
        raise ProfileError(f"peers: {peer.id!r}: {error}") from error


def key_text(certificate: x509.Certificate, app: str) -> str:
    """The text whose SHA-1 (opendht ``InfoHash.get``) is the DHT key where the certificate's owner listens:
    the certificate's SHA-256 fingerprint (hex) and the application name."""
    return smime.fingerprint(certificate).hex() + app


def generate(files: IdentityFiles, host_id: str, address: str | None = None) -> x509.Certificate:
    """Create a key and a self-signed certificate for ``host_id`` (the key file is 0600, written first)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_id)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if address:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
    certificate = builder.sign(key, hashes.SHA256())
    _write(files.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()), 0o600)
    _write(files.certificate, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return certificate


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` from the start (never briefly readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
