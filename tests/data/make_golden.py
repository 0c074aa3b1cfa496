#!/usr/bin/env python3
"""Regenerate the golden wire vectors next to this script (tests/test_wire_golden.py checks them; the tests never
run this). A change of these bytes is a change of the wire format: bump the version (offer ``VERSION``, packet
``VERSION``) before you regenerate, so that a host of the old version rejects the new bytes instead of misreading
them.

    python3 tests/data/make_golden.py              # rewrite every vector; keep the S/MIME identities
    python3 tests/data/make_golden.py --new-certs  # also replace the S/MIME identities (and so the sealed blob)

What the files pin (vectors.json holds every input and derived value, bytes in hex):

- ``packet-*.bin``: handshake packets (plexus/punch/packet.py) of both roles under ``punch_key(0x01..0x20)``, and
  the opening packet exactly as the acceptor's Opener sends it (``opening(b"plexus")``).
- ``offer-*.json``: canonical offer documents (plexus/rendezvous/offer.py), the exact bytes ``Offer.encode``
  gives, no trailing newline: an invite, an accept, a refuse answering the invite, a "cannot connect" notice
  (a refuse without reply_to) and a withdrawal (as ``OfferExchange._withdraw`` makes it).
- vectors.json ``x25519``: RFC 7748 §6.1 key pairs and shared secret through ``secret.Ephemeral``; ``session``:
  ``secret.derive`` of that shared secret with the invite's and the accept's nonces.
- ``sealed-none-invite.json``, ``sealed-psk-invite.json``: the invite as ``authentication: none`` and ``psk``
  documents (deterministic JSON wrappers; the psk MAC key is HKDF'd from a fixed psk string).
- ``sealed-smime-invite.bin``: the invite signed by ``smime-alice`` and encrypted to ``smime-bob`` (DER). S/MIME
  encryption is randomized, so the blob cannot be reproduced; it is resealed only when it no longer unseals to
  the invite (or with --new-certs), and the test only decrypts and verifies it.
- ``smime-alice.*``, ``smime-bob.*``: test-only self-signed RSA identities valid 2000-01-01 .. 9999-12-31, so that
  no check of the current time can ever expire them (the example certificates in profiles/examples/certs are
  rewritten with new keys by their own make-certs.py, which would break a stored blob). THESE KEYS ARE PUBLIC.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # the checkout's plexus, installed or not

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from plexus.profile.model import Peer  # noqa: E402
from plexus.punch import packet as pk  # noqa: E402
from plexus.rendezvous import smime  # noqa: E402
from plexus.rendezvous.auth import PlainAuthenticator, PskAuthenticator  # noqa: E402
from plexus.rendezvous.offer import Offer  # noqa: E402
from plexus.rendezvous.secret import Ephemeral, derive  # noqa: E402

# -- inputs ------------------------------------------------------------------------------------------------------

PUNCH_SECRET = bytes(range(0x01, 0x21))
PUNCH_SESSION_ID = bytes.fromhex("a0a1a2a3a4a5a6a7")
OPENING_HINT = b"plexus"  # what the Opener sends (plexus/punch/handshake.py)
# name: (kind, from_acceptor, counter); each side counts its own packets from 1
PACKETS: dict[str, tuple[str, bool, int]] = {
    "hello-initiator": ("HELLO", False, 1),
    "hello-acceptor": ("HELLO", True, 1),
    "ack-initiator": ("ACK", False, 2),
    "ack-acceptor": ("ACK", True, 2),
    "done-acceptor": ("DONE", True, 3),  # the acceptor: "I have your ACK"
    "done-initiator": ("DONE", False, 3),  # the initiator: "I have your DONE"
}

# RFC 7748 §6.1: an outside check of the X25519 step
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")

INVITE_NONCE = bytes(range(0x40, 0x60))
ACCEPT_NONCE = bytes(range(0x60, 0x80))
T0 = 1767225600.25  # 2026-01-01T00:00:00.25Z; fractions that are exact in binary, as time.time() gives floats


def _fingerprint(label: str) -> str:
    return hashlib.sha256(label.encode()).digest().hex(":").upper()  # the form keys.fingerprint gives


def offers() -> dict[str, Offer]:
    alice_public = Ephemeral(X25519PrivateKey.from_private_bytes(ALICE_PRIVATE)).public
    bob_public = Ephemeral(X25519PrivateKey.from_private_bytes(BOB_PRIVATE)).public
    return {
        # two exports inserted out of order: pins the sorting of nested keys too
        "invite": Offer("invite", "alice", "bob", INVITE_NONCE, T0, endpoint=("203.0.113.7", 40001),
                        nat="endpoint-independent", key=alice_public,
                        exports={"mtu": "1400", "fingerprint": _fingerprint("alice tls")}),
        "accept": Offer("accept", "bob", "alice", ACCEPT_NONCE, T0 + 1.5, endpoint=("198.51.100.20", 40002),
                        nat="endpoint-independent", key=bob_public, exports={"fingerprint": _fingerprint("bob tls")},
                        reply_to=INVITE_NONCE),
        # a non-ASCII reason: pins ensure_ascii (\u escapes)
        "refuse": Offer("refuse", "bob", "alice", bytes(range(0x80, 0xA0)), T0 + 1.75, reply_to=INVITE_NONCE,
                        reason="busy: the fixed UDP port is held by the session with peer 'zoë'"),
        # the initiator's NAT cannot punch: it tells the acceptor instead of inviting (session.notify_refusal)
        "notice": Offer("refuse", "carol", "bob", bytes(range(0xA0, 0xC0)), T0 + 2.0,
                        reason="its NAT gives a new public port for every destination (address-and-port-dependent "
                               "mapping), so there is no port to punch toward"),
        "withdraw": Offer("refuse", "alice", "bob", bytes(range(0xC0, 0xE0)), T0 + 60.125, reply_to=INVITE_NONCE,
                          reason="withdrawn: the initiator stopped waiting"),
        # a symmetric initiator holding a TURN allocation: its relayed address, its measured filtering
        "invite-relayed": Offer("invite", "carol", "bob", bytes(range(0x10, 0x30)), T0 + 120.0,
                                endpoint=("203.0.113.9", 61001), nat="address-and-port-dependent", key=alice_public,
                                filtering="address-and-port-dependent", relay=("192.0.2.50", 49152)),
        # the acceptor chose the relay (the initiator's allocation): it says so, and names no relay of its own
        "accept-relayed": Offer("accept", "bob", "carol", bytes(range(0x30, 0x50)), T0 + 120.5,
                                endpoint=("198.51.100.20", 40003), nat="address-and-port-dependent", key=bob_public,
                                reply_to=bytes(range(0x10, 0x30)), path="relayed"),
    }


PSK = "plexus golden psk: not a secret"
PSK_PEER = "bob"  # alice seals the invite for bob

# -- output ------------------------------------------------------------------------------------------------------


def _offer_fields(offer: Offer) -> dict[str, Any]:
    """The Offer's attributes as JSON (bytes in hex), None and empty left out: what the test rebuilds it from."""
    fields: dict[str, Any] = {}
    for name, value in vars(offer).items():
        if value is None or value == {}:
            continue
        fields[name] = value.hex() if isinstance(value, bytes) else list(value) if isinstance(value, tuple) else value
    return fields


def _write(name: str, data: bytes) -> None:
    (HERE / name).write_bytes(data)
    print(f"wrote tests/data/{name}")


def _make_identity(name: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    address = f"{name}@example.org"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"plexus golden {name}"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, address)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(f"smime-{name}.crt", certificate.public_bytes(serialization.Encoding.PEM))
    _write(f"smime-{name}.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    os.chmod(HERE / f"smime-{name}.key", 0o600)


def _identity(name: str) -> smime.Identity:
    return smime.load_identity(HERE / f"smime-{name}.crt", HERE / f"smime-{name}.key")


def _smime_current(path: Path, content: bytes, sender: smime.Identity, recipient: smime.Identity) -> bool:
    if not path.exists():
        return False
    try:
        opened, signer = smime.unseal(path.read_bytes(), recipient, [])
    except smime.SmimeError:
        return False
    return opened == content and smime.fingerprint(signer) == smime.fingerprint(sender.certificate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-certs", action="store_true", help="replace the S/MIME test identities")
    arguments = parser.parse_args()

    key = pk.punch_key(PUNCH_SECRET)
    packets = []
    for name, (kind, from_acceptor, counter) in PACKETS.items():
        _write(f"packet-{name}.bin", pk.encode(pk.Packet(pk.Kind[kind], from_acceptor, PUNCH_SESSION_ID, counter), key))
        packets.append({"file": f"packet-{name}.bin", "kind": kind, "from_acceptor": from_acceptor, "counter": counter})
    _write("packet-open.bin", pk.opening(OPENING_HINT))

    alice, bob = (Ephemeral(X25519PrivateKey.from_private_bytes(p)) for p in (ALICE_PRIVATE, BOB_PRIVATE))
    shared = alice.shared(bob.public)
    assert shared == bob.shared(alice.public)
    keys = derive(shared, INVITE_NONCE, ACCEPT_NONCE, "alice", "bob")

    documents = offers()
    for name, offer in documents.items():
        _write(f"offer-{name}.json", offer.encode())
    invite = documents["invite"].encode()
    _write("sealed-none-invite.json", PlainAuthenticator().seal(invite, Peer(PSK_PEER)))
    _write("sealed-psk-invite.json", PskAuthenticator(PSK).seal(invite, Peer(PSK_PEER)))

    identity_files = [HERE / f"smime-{name}.{ext}" for name in ("alice", "bob") for ext in ("crt", "key")]
    if arguments.new_certs or not all(path.exists() for path in identity_files):
        _make_identity("alice")
        _make_identity("bob")
    sender, recipient = _identity("alice"), _identity("bob")
    sealed = HERE / "sealed-smime-invite.bin"
    if not _smime_current(sealed, invite, sender, recipient):
        _write(sealed.name, smime.seal(invite, sender, recipient.certificate))

    vectors = {
        "about": "golden wire vectors of plexus wire version 1; made by tests/data/make_golden.py, checked by "
                 "tests/test_wire_golden.py; bytes in hex",
        "punch": {"secret": PUNCH_SECRET.hex(), "key": key.hex(), "session_id": PUNCH_SESSION_ID.hex(),
                  "packets": packets,
                  "opening": {"file": "packet-open.bin", "session_hint": OPENING_HINT.hex(), "from_acceptor": True}},
        "x25519": {"alice_private": ALICE_PRIVATE.hex(), "alice_public": alice.public.hex(),
                   "bob_private": BOB_PRIVATE.hex(), "bob_public": bob.public.hex(), "shared": shared.hex()},
        "session": {"shared": shared.hex(), "invite_nonce": INVITE_NONCE.hex(), "accept_nonce": ACCEPT_NONCE.hex(),
                    "initiator": "alice", "acceptor": "bob", "secret": keys.secret.hex(),
                    "session_id": keys.session_id.hex()},
        "offers": {name: {"file": f"offer-{name}.json", "offer": _offer_fields(offer)}
                   for name, offer in documents.items()},
        "sealed": {
            "none": {"file": "sealed-none-invite.json", "offer": "offer-invite.json", "peer": PSK_PEER},
            "psk": {"file": "sealed-psk-invite.json", "offer": "offer-invite.json", "peer": PSK_PEER, "psk": PSK},
            "smime": {"file": sealed.name, "offer": "offer-invite.json",
                      "sender": {"certificate": "smime-alice.crt", "key": "smime-alice.key",
                                 "fingerprint": smime.fingerprint(sender.certificate).hex()},
                      "recipient": {"certificate": "smime-bob.crt", "key": "smime-bob.key"}},
        },
    }
    _write("vectors.json", (json.dumps(vectors, indent=2) + "\n").encode())
    _write("turn_rest.json", (json.dumps(turn_rest(), indent=2) + "\n").encode())


# -- TURN REST credentials (plexus/relay/credentials.py; checked by tests/relay/test_credentials.py) ---------------

TURN_REST_SECRET = "plexus golden turn secret: not a secret"
TURN_REST_NOW = 1767225600  # 2026-01-01T00:00:00Z
TURN_REST_CASES = (("alice", 86400), ("bob-laptop", 600))  # (name, ttl): the default REST_TTL and a short one


def turn_rest() -> dict[str, Any]:
    """The REST scheme computed here with the standard library alone (not plexus): username ``<now+ttl>:<name>``,
    password base64(HMAC-SHA1(secret, username))."""
    import base64
    import hmac

    cases = []
    for name, ttl in TURN_REST_CASES:
        username = f"{TURN_REST_NOW + ttl}:{name}"
        password = base64.b64encode(hmac.new(TURN_REST_SECRET.encode(), username.encode(), hashlib.sha1).digest())
        cases.append({"name": name, "ttl": ttl, "username": username, "password": password.decode()})
    return {"about": "TURN REST shared-secret credentials (draft-uberti-behave-turn-rest, coturn use-auth-secret); "
                     "made by tests/data/make_golden.py, checked by tests/relay/test_credentials.py",
            "secret": TURN_REST_SECRET, "now": TURN_REST_NOW, "cases": cases}


if __name__ == "__main__":
    main()
