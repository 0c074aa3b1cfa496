"""The session secret: HKDF-SHA256 over an ephemeral X25519 shared secret, salted with both nonces and bound to
both ids. Whoever reads the offers (the mailbox operator) sees the public keys and nonces but not the private
keys, so it cannot derive the secret."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_BYTES = 32
SESSION_ID_BYTES = 8


@dataclass(frozen=True)
class Ephemeral:
    """One side's X25519 key pair for one offer (never reused, never stored)."""

    private: X25519PrivateKey = field(default_factory=X25519PrivateKey.generate, repr=False)

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def shared(self, peer_public: bytes) -> bytes:
        """The X25519 shared secret; ValueError for an invalid (e.g. all-zero, low-order) peer key."""
        return self.private.exchange(X25519PublicKey.from_public_bytes(peer_public))


@dataclass(frozen=True)
class SessionKeys:
    secret: bytes
    session_id: bytes


def _context(label: bytes, initiator: str, acceptor: str) -> bytes:
    # length-prefixed so that ("ab", "c") and ("a", "bc") give different contexts
    parts = [label, initiator.encode(), acceptor.encode()]
    return b"".join(len(part).to_bytes(2, "big") + part for part in parts)


def derive(shared: bytes, invite_nonce: bytes, accept_nonce: bytes, initiator: str, acceptor: str) -> SessionKeys:
    """Both sides call this with the same arguments (the initiator's id first) and get the same keys."""
    salt = invite_nonce + accept_nonce

    def expand(label: bytes, length: int) -> bytes:
        return HKDF(hashes.SHA256(), length, salt, _context(label, initiator, acceptor)).derive(shared)

    return SessionKeys(expand(b"plexus session", SECRET_BYTES), expand(b"plexus session id", SESSION_ID_BYTES))
