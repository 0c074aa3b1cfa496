"""Offer authentication, carrier-independent: turn canonical offer bytes into a document for one peer and back.

Three methods, chosen by the profile: ``smime`` (sign with our key, encrypt to the peer's certificate), ``psk``
(HMAC-SHA256 with a key derived from the pre-shared secret), ``none`` (plain; only when the profile says so). The
exchange asks ``vouch`` whether an opened document really comes from the configured peer its offer names.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from hashlib import sha256

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from plexus.errors import ProfileError
from plexus.profile.model import Authentication, Peer, Profile
from plexus.rendezvous import smime

log = logging.getLogger("plexus.rendezvous")

MAX_DOCUMENT_BYTES = 96 * 1024  # an offer (<= 64 KiB) plus signature, certificate and base64


class AuthError(ValueError):
    """A document that does not authenticate (forged, altered, or not for us)."""


@dataclass(frozen=True)
class Opened:
    offer: bytes  # the canonical offer bytes, authenticated
    signer: x509.Certificate | None = None  # S/MIME: the certificate whose signature verified
    psk_peers: frozenset[str] = frozenset()  # PSK: the peers whose own key verified the MAC
    psk_default: bool = False  # PSK: the profile's key (rendezvous.psk) verified it


class Authenticator(ABC):
    method: str
    media_type: str  # how a carrier labels the document (e.g. a MIME type)

    @abstractmethod
    def seal(self, offer: bytes, peer: Peer) -> bytes:
        """The document to carry to ``peer``."""

    @abstractmethod
    def open(self, document: bytes) -> Opened:
        """Authenticate a received document; AuthError when it does not verify."""

    @abstractmethod
    def vouch(self, opened: Opened, peer: Peer) -> bool:
        """Whether the authenticated sender is the configured ``peer`` (the id the offer claims)."""


class PlainAuthenticator(Authenticator):
    """``authentication: none``: anyone who can mail us can claim any configured peer id."""

    method, media_type = "none", "application/json"

    def seal(self, offer: bytes, peer: Peer) -> bytes:
        return _wrap({"auth": "none", "offer": _b64(offer)})

    def open(self, document: bytes) -> Opened:
        fields = _unwrap(document, "none", ("auth", "offer"))
        return Opened(_unb64(fields["offer"], "offer"))

    def vouch(self, opened: Opened, peer: Peer) -> bool:
        return True


class PskAuthenticator(Authenticator):
    """HMAC-SHA256 over the canonical offer bytes, with a key per peer (``peers[].psk``, else the profile's
    ``rendezvous.psk``). A document is vouched for as a peer only when that peer's own key verifies it, so a peer
    holding a different key cannot pose as another. The MAC key is HKDF'd from the pre-shared secret so that the
    secret itself is never used directly as a key."""

    method, media_type = "psk", "application/json"

    def __init__(self, psk: str | None = None, *, peers: dict[str, str] | None = None) -> None:
        """``psk``: the key of every peer without one of its own in ``peers`` (peer id -> key)."""
        self._default = _mac_key(psk) if psk is not None else None
        self._keys = {peer_id: _mac_key(value) for peer_id, value in (peers or {}).items()}

    def _key(self, peer_id: str) -> bytes | None:
        return self._keys.get(peer_id, self._default)

    def seal(self, offer: bytes, peer: Peer) -> bytes:
        key = self._key(peer.id)
        if key is None:
            raise AuthError(f"no pre-shared key for peer {peer.id!r} (set peers[].psk or rendezvous.psk)")
        return _wrap({"auth": "hmac-sha256", "offer": _b64(offer), "mac": _b64(_mac(key, offer))})

    def open(self, document: bytes) -> Opened:
        fields = _unwrap(document, "hmac-sha256", ("auth", "offer", "mac"))
        offer, mac = _unb64(fields["offer"], "offer"), _unb64(fields["mac"], "mac")
        default_ok = self._default is not None and hmac.compare_digest(_mac(self._default, offer), mac)
        keyed = frozenset(peer_id for peer_id, key in self._keys.items() if hmac.compare_digest(_mac(key, offer), mac))
        if not keyed and not default_ok:
            raise AuthError("HMAC does not verify (wrong pre-shared key, or forged)")
        return Opened(offer, psk_peers=keyed, psk_default=default_ok)

    def vouch(self, opened: Opened, peer: Peer) -> bool:
        if peer.id in self._keys:
            return peer.id in opened.psk_peers
        return opened.psk_default


def _mac_key(psk: str) -> bytes:
    if len(psk) < 16:
        raise ProfileError("rendezvous: the pre-shared key is shorter than 16 characters",
                           hint="use e.g. `openssl rand -base64 32`")
    return HKDF(hashes.SHA256(), 32, None, b"plexus offer mac v1").derive(psk.encode())


def _mac(key: bytes, offer: bytes) -> bytes:
    return hmac.new(key, offer, sha256).digest()


class SmimeAuthenticator(Authenticator):
    """Peers are trusted by their configured certificate (pinned) or, without one, by a certificate that
    chains to the profile's S/MIME CA and names the peer (its address or id)."""

    method = "smime"
    media_type = 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'

    def __init__(self, ours: smime.Identity, peers: tuple[Peer, ...],
                 authorities: list[x509.Certificate]) -> None:
        self._ours = ours
        self._authorities = authorities
        self._pinned: dict[str, x509.Certificate] = {
            peer.id: smime.load_certificate(peer.certificate) for peer in peers if peer.certificate}
        self._learned: dict[str, x509.Certificate] = {}  # CA mode: certificates seen in verified offers

    def seal(self, offer: bytes, peer: Peer) -> bytes:
        recipient = self._pinned.get(peer.id) or self._learned.get(peer.id)
        if recipient is None:
            raise AuthError(f"no certificate for peer {peer.id!r} to encrypt to (set peers[].certificate)")
        return smime.seal(offer, self._ours, recipient)

    def open(self, document: bytes) -> Opened:
        if len(document) > MAX_DOCUMENT_BYTES:
            raise AuthError(f"document of {len(document)} bytes is larger than {MAX_DOCUMENT_BYTES}")
        try:
            content, signer = smime.unseal(document, self._ours, list(self._pinned.values()))
        except smime.SmimeError as error:
            raise AuthError(str(error)) from error
        return Opened(content, signer)

    def vouch(self, opened: Opened, peer: Peer) -> bool:
        signer = opened.signer
        if signer is None:
            return False
        pinned = self._pinned.get(peer.id)
        if pinned is not None:
            return smime.fingerprint(signer) == smime.fingerprint(pinned) and smime.within_validity(signer)
        if not self._authorities or not smime.chains_to(signer, self._authorities):
            return False
        names = smime.names(signer)
        if peer.id in names or (peer.address is not None and peer.address.lower() in names):
            self._learned[peer.id] = signer
            return True
        return False


def authenticator_for(profile: Profile) -> Authenticator:
    """The profile's authenticator; ProfileError when its keys or certificates cannot be used."""
    auth: Authentication = profile.rendezvous.authentication
    if auth.method == "none":
        log.warning("rendezvous: authentication is off (authentication: none): anyone who can send mail to "
                    "this mailbox can pose as a peer")
        return PlainAuthenticator()
    if auth.method == "psk":
        keyless = [peer.id for peer in profile.peers if profile.psk_for(peer) is None]
        if keyless:
            raise ProfileError(f"rendezvous: authentication psk needs a key for peer {keyless[0]!r}",
                               hint="set peers[].psk or rendezvous.psk")
        own = {peer.id: peer.psk.resolve() for peer in profile.peers if peer.psk is not None}
        shared = [peer.id for peer in profile.peers if peer.psk is None]  # validate warns when several
        return PskAuthenticator(auth.psk.resolve() if auth.psk is not None and shared else None, peers=own)
    if auth.certificate is None or auth.key is None:
        raise ProfileError("rendezvous: S/MIME needs our certificate and key",
                           hint="set rendezvous.smime.certificate and .key")
    try:
        ours = smime.load_identity(auth.certificate, auth.key)
        authorities = smime.load_certificates(auth.ca) if auth.ca else []
        unverifiable = [peer.id for peer in profile.peers if peer.certificate is None]
        if unverifiable and not authorities:
            raise ProfileError(f"rendezvous: peer {unverifiable[0]!r} has no certificate and there is no S/MIME CA",
                               hint="set peers[].certificate or rendezvous.smime.ca")
        return SmimeAuthenticator(ours, profile.peers, authorities)
    except smime.SmimeError as error:
        raise ProfileError(f"rendezvous: {error}") from error


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise AuthError(f"{name} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(f"{name} is not valid base64") from None


def _wrap(fields: dict[str, str]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def _unwrap(document: bytes, method: str, keys: tuple[str, ...]) -> dict[str, object]:
    if len(document) > MAX_DOCUMENT_BYTES:
        raise AuthError(f"document of {len(document)} bytes is larger than {MAX_DOCUMENT_BYTES}")
    try:
        fields = json.loads(document)
    except (UnicodeDecodeError, ValueError):
        raise AuthError(f"not a JSON document (this profile expects authentication {method})") from None
    if not isinstance(fields, dict) or sorted(fields) != sorted(keys) or fields.get("auth") != method:
        raise AuthError(f"not a {method} document")
    return fields
