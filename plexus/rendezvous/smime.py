"""S/MIME for offers: sign (detached, SHA-256) with our key, encrypt (AES-256) to the peer's RSA certificate;
receive: decrypt with our key, verify the signature.

cryptography signs, encrypts and decrypts, but has no PKCS#7 signature verification; that part follows RFC 5652
§5.4 with asn1crypto parsing the SignedData: the message-digest attribute must match the content, and the
signature is checked over the signed attributes re-tagged as a SET OF (0x31). Chain checks use cryptography's
x509 verification API. Every failure is an ``SmimeError`` with a one-line reason.
"""

from __future__ import annotations

import datetime
import email
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


class SmimeError(ValueError):
    """An S/MIME blob that cannot be decrypted or whose signature does not verify."""


@dataclass(frozen=True)
class Identity:
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def load_certificate(path: Path) -> x509.Certificate:
    """A PEM (or DER) certificate; SmimeError naming the file otherwise."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SmimeError(f"cannot read certificate {path}: {error.strerror}") from error
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:
        raise SmimeError(f"{path} is not a PEM or DER certificate") from None


def load_certificates(path: Path) -> list[x509.Certificate]:
    """All certificates of a PEM bundle (a CA file)."""
    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as error:
        raise SmimeError(f"cannot read CA file {path}: {error.strerror}") from error
    except ValueError:
        raise SmimeError(f"{path} holds no PEM certificate") from None
    return certificates


def load_identity(certificate: Path, key: Path) -> Identity:
    cert = load_certificate(certificate)
    try:
        private = serialization.load_pem_private_key(
            key.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True)  # our own key: skip the 25 ms check
    except OSError as error:
        raise SmimeError(f"cannot read key {key}: {error.strerror}") from error
    except (ValueError, TypeError):
        raise SmimeError(f"{key} is not an unencrypted PEM private key") from None
    if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SmimeError(f"{key}: only RSA and EC keys can sign S/MIME")
    public = private.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    if public != cert.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo):
        raise SmimeError(f"key {key} does not belong to certificate {certificate}")
    return Identity(cert, private)


def seal(content: bytes, signer: Identity, recipient: x509.Certificate) -> bytes:
    """Sign ``content`` (detached, our certificate included) and encrypt the signed message; DER bytes."""
    if not isinstance(recipient.public_key(), rsa.RSAPublicKey):
        raise SmimeError("S/MIME encryption needs an RSA recipient certificate")
    signed = (pkcs7.PKCS7SignatureBuilder().set_data(content)
              .add_signer(signer.certificate, signer.key, hashes.SHA256())
              .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature]))
    return (pkcs7.PKCS7EnvelopeBuilder().set_data(signed).add_recipient(recipient)
            .set_content_encryption_algorithm(algorithms.AES256)
            .encrypt(serialization.Encoding.DER, []))


def unseal(blob: bytes, ours: Identity, known: list[x509.Certificate]) -> tuple[bytes, x509.Certificate]:
    """Decrypt with our key, verify the signature; (content, signer certificate). The signer is found among the
    certificates embedded in the signature, then among ``known`` (configured peer certificates)."""
    if not isinstance(ours.key, rsa.RSAPrivateKey):
        raise SmimeError("S/MIME decryption needs our RSA key")
    try:
        signed = pkcs7.pkcs7_decrypt_der(blob, ours.certificate, ours.key, [])
    except ValueError as error:
        reason = "not encrypted to our certificate" if "recipient" in str(error).lower() else \
            "not a valid S/MIME envelope"
        raise SmimeError(f"cannot decrypt: {reason}") from error
    content, signature = _split_signed(signed)
    return content, _verify(content, signature, known)


def _split_signed(message: bytes) -> tuple[bytes, bytes]:
    """(content, DER signature) of a multipart/signed message."""
    parsed = email.message_from_bytes(message)
    boundary = parsed.get_param("boundary") if parsed.get_content_type() == "multipart/signed" else None
    if not isinstance(boundary, str) or not boundary:
        raise SmimeError("decrypted content is not a multipart/signed message")
    delimiter = b"\r\n--" + boundary.encode()
    pieces = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n").split(delimiter)
    # pieces: headers+preamble, "\r\n"+content, "\r\n"+signature part, "--\r\n"
    if len(pieces) != 4 or not pieces[3].startswith(b"--"):
        raise SmimeError("multipart/signed message must have exactly two parts")
    content = pieces[1].removeprefix(b"\r\n")
    signature_part = email.message_from_bytes(pieces[2].removeprefix(b"\r\n"))
    if signature_part.get_content_type() not in ("application/pkcs7-signature", "application/x-pkcs7-signature"):
        raise SmimeError("second part is not a PKCS#7 signature")
    signature = signature_part.get_payload(decode=True)
    if not isinstance(signature, bytes) or not signature:
        raise SmimeError("empty signature part")
    return content, signature


def _verify(content: bytes, signature: bytes, known: list[x509.Certificate]) -> x509.Certificate:
    try:
        info = cms.ContentInfo.load(signature)
        if info["content_type"].native != "signed_data":
            raise SmimeError("signature is not a SignedData")
        signed_data = info["content"]
        signer_infos = signed_data["signer_infos"]
        if len(signer_infos) != 1:
            raise SmimeError(f"expected one signer, found {len(signer_infos)}")
        signer_info = signer_infos[0]
        embedded = [x509.load_der_x509_certificate(choice.chosen.dump())
                    for choice in (signed_data["certificates"] or []) if choice.name == "certificate"]
        certificate = _find_signer(signer_info["sid"], [*embedded, *known])
        digest_name = signer_info["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            raise SmimeError(f"digest {digest_name} not accepted")
        attributes = signer_info["signed_attrs"]
        if not attributes:
            raise SmimeError("signature has no signed attributes")
        values = {attribute["type"].native: attribute["values"] for attribute in attributes}
        if "message_digest" not in values or values.get("content_type", [None])[0].native != "data":
            raise SmimeError("signature lacks the content-type or message-digest attribute")
        expected = values["message_digest"][0].native
        actual = hashlib.new(digest_name, content).digest()
        if not hmac.compare_digest(expected, actual):
            raise SmimeError("content does not match the signed digest (altered)")
        signed_bytes = b"\x31" + attributes.dump()[1:]  # [0] IMPLICIT -> SET OF, RFC 5652 §5.4
        algorithm = signer_info["signature_algorithm"].signature_algo
        value = signer_info["signature"].native
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SmimeError(f"malformed signature: {error}") from error
    _check_signature(certificate, algorithm, _HASHES[digest_name](), value, signed_bytes)
    return certificate


def _find_signer(sid: cms.SignerIdentifier, certificates: list[x509.Certificate]) -> x509.Certificate:
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            issuer_serial = sid.chosen
            if (issuer_serial["serial_number"].native == certificate.serial_number
                    and issuer_serial["issuer"].dump() == certificate.issuer.public_bytes()):
                return certificate
        elif sid.name == "subject_key_identifier":
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if ski == sid.chosen.native:
                return certificate
    raise SmimeError("signer certificate is neither embedded nor configured")


def _check_signature(certificate: x509.Certificate, algorithm: str, digest: hashes.HashAlgorithm,
                     value: bytes, data: bytes) -> None:
    public = certificate.public_key()
    try:
        if algorithm == "rsassa_pkcs1v15" and isinstance(public, rsa.RSAPublicKey):
            public.verify(value, data, padding.PKCS1v15(), digest)
        elif algorithm == "ecdsa" and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(value, data, ec.ECDSA(digest))
        else:
            raise SmimeError(f"signature algorithm {algorithm} does not fit the signer's key")
    except InvalidSignature:
        raise SmimeError("signature does not verify (forged or altered)") from None


def within_validity(certificate: x509.Certificate, at: datetime.datetime | None = None) -> bool:
    at = at or datetime.datetime.now(datetime.UTC)
    return certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc


def chains_to(certificate: x509.Certificate, authorities: list[x509.Certificate],
              intermediates: list[x509.Certificate] | None = None) -> bool:
    """True when ``certificate`` is valid now and signed (through ``intermediates``) by one of ``authorities``.
    The leaf may be any end-entity certificate (S/MIME has no web PKI profile); if it names extended key
    usages, e-mail protection must be one of them."""
    if not _allows_email(certificate):
        return False
    try:
        verifier = (verification.PolicyBuilder().store(verification.Store(authorities))
                    .time(datetime.datetime.now(datetime.UTC))
                    .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=verification.ExtensionPolicy.permit_all())
                    .build_client_verifier())
        verifier.verify(certificate, intermediates or [])
    except (verification.VerificationError, ValueError):
        return False
    return True


def _allows_email(certificate: x509.Certificate) -> bool:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.EMAIL_PROTECTION in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def names(certificate: x509.Certificate) -> set[str]:
    """The identities a certificate vouches for: its e-mail addresses (SAN, lower case) and common names."""
    found = {attribute.value for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
             if isinstance(attribute.value, str)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found.update(address.lower() for address in san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    return found


def fingerprint(certificate: x509.Certificate) -> bytes:
    return certificate.fingerprint(hashes.SHA256())
