"""Golden wire vectors: the exact bytes two separately upgraded hosts must agree on (handshake packets, offer
documents, the session key derivation, PSK and S/MIME sealed offers), stored in tests/data/ and described, inputs
and derived values, in tests/data/vectors.json.

A change of these bytes is a change of the wire format: bump the version (offer ``VERSION``, packet ``VERSION``)
and regenerate with tests/data/make_golden.py. The tests never run the generator.
"""

from __future__ import annotations

import base64
import datetime
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from plexus.profile.model import Peer
from plexus.punch import packet as pk
from plexus.rendezvous import offer as offer_module
from plexus.rendezvous import smime
from plexus.rendezvous.auth import AuthError, PlainAuthenticator, PskAuthenticator, SmimeAuthenticator
from plexus.rendezvous.offer import Offer
from plexus.rendezvous.secret import Ephemeral, derive

DATA = Path(__file__).resolve().parent / "data"
CHANGED = "wire format changed: bump the version and regenerate with tests/data/make_golden.py"


@cache
def vectors() -> dict[str, Any]:
    return json.loads((DATA / "vectors.json").read_text())


def stored(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_vectors_are_of_wire_version_1() -> None:
    # a bumped version needs new vectors (and the old ones kept if the old version is still accepted)
    assert pk.VERSION == 1 and offer_module.VERSION == 1, CHANGED


# -- handshake packets -------------------------------------------------------------------------------------------

PACKETS = [entry["file"] for entry in vectors()["punch"]["packets"]]


def punch_packet(name: str) -> tuple[pk.Packet, bytes, bytes]:
    punch = vectors()["punch"]
    entry = next(entry for entry in punch["packets"] if entry["file"] == name)
    packet = pk.Packet(pk.Kind[entry["kind"]], entry["from_acceptor"], bytes.fromhex(punch["session_id"]),
                       entry["counter"])
    return packet, bytes.fromhex(punch["key"]), stored(name)


def test_punch_key() -> None:
    punch = vectors()["punch"]
    assert bytes.fromhex(punch["secret"]) == bytes(range(0x01, 0x21))
    assert pk.punch_key(bytes.fromhex(punch["secret"])).hex() == punch["key"], CHANGED


def test_the_packet_vectors_cover_every_authenticated_kind_and_role() -> None:
    covered = {(packet.kind, packet.from_acceptor) for packet, _, _ in map(punch_packet, PACKETS)}
    assert covered == {(kind, role) for kind in (pk.Kind.HELLO, pk.Kind.ACK, pk.Kind.DONE) for role in (False, True)}


@pytest.mark.parametrize("name", PACKETS)
def test_packet_encodes_to_the_stored_bytes(name: str) -> None:
    packet, key, data = punch_packet(name)
    assert pk.encode(packet, key) == data, CHANGED
    assert len(data) == pk.PACKET_LENGTH == 34 and data[:4] == b"PLXP" and data[4] == 1


@pytest.mark.parametrize("name", PACKETS)
def test_stored_packet_decodes(name: str) -> None:
    packet, key, data = punch_packet(name)
    assert pk.is_plexus(data)
    assert pk.decode(data, key, packet.session_id) == packet, CHANGED


@pytest.mark.parametrize("name", PACKETS)
def test_every_flipped_bit_is_rejected(name: str) -> None:
    packet, key, data = punch_packet(name)
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(pk.BadPacket):
            pk.decode(bytes(flipped), key, packet.session_id)
            pytest.fail(f"bit {bit} flipped and the packet still decodes")


def test_stored_packet_of_another_session_or_key_is_rejected() -> None:
    packet, key, data = punch_packet(PACKETS[0])
    with pytest.raises(pk.BadPacket, match="session"):
        pk.decode(data, key, bytes(8))
    with pytest.raises(pk.BadPacket, match="tag"):
        pk.decode(data, pk.punch_key(bytes(32)), packet.session_id)
    for wrong_length in (data[:-1], data + b"\0"):
        with pytest.raises(pk.BadPacket, match="length"):
            pk.decode(wrong_length, key, packet.session_id)


def test_opening_packet() -> None:
    opening = vectors()["punch"]["opening"]
    data = stored(opening["file"])
    assert pk.opening(bytes.fromhex(opening["session_hint"]), opening["from_acceptor"]) == data, CHANGED
    assert pk.opening(b"plexus") == data  # what the acceptor's Opener sends (plexus/punch/handshake.py)
    assert pk.is_plexus(data) and len(data) == pk.PACKET_LENGTH
    with pytest.raises(pk.BadPacket, match="opening"):  # never taken for a handshake packet, whatever the key
        pk.decode(data, bytes.fromhex(vectors()["punch"]["key"]), data[6:14])


# -- X25519 and the session keys ---------------------------------------------------------------------------------


def test_x25519_exchange() -> None:
    x = vectors()["x25519"]
    alice = Ephemeral(X25519PrivateKey.from_private_bytes(bytes.fromhex(x["alice_private"])))
    bob = Ephemeral(X25519PrivateKey.from_private_bytes(bytes.fromhex(x["bob_private"])))
    assert alice.public.hex() == x["alice_public"] and bob.public.hex() == x["bob_public"]
    assert alice.shared(bob.public).hex() == bob.shared(alice.public).hex() == x["shared"]
    # RFC 7748 §6.1: the stored value is the RFC's, not only plexus's own
    assert x["shared"] == "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_session_keys() -> None:
    s = vectors()["session"]
    keys = derive(bytes.fromhex(s["shared"]), bytes.fromhex(s["invite_nonce"]), bytes.fromhex(s["accept_nonce"]),
                  s["initiator"], s["acceptor"])
    assert keys.secret.hex() == s["secret"], CHANGED
    assert keys.session_id.hex() == s["session_id"], CHANGED
    assert s["shared"] == vectors()["x25519"]["shared"]


# -- offer documents ---------------------------------------------------------------------------------------------

OFFERS = sorted(vectors()["offers"])


def expected_offer(name: str) -> Offer:
    fields = dict(vectors()["offers"][name]["offer"])
    for field in ("nonce", "key", "reply_to"):
        if field in fields:
            fields[field] = bytes.fromhex(fields[field])
    for field in ("endpoint", "relay"):
        if field in fields:
            fields[field] = tuple(fields[field])
    return Offer(**fields)


@pytest.mark.parametrize("name", OFFERS)
def test_offer_encodes_to_the_stored_bytes(name: str) -> None:
    data = stored(vectors()["offers"][name]["file"])
    assert expected_offer(name).encode() == data, CHANGED


@pytest.mark.parametrize("name", OFFERS)
def test_stored_offer_decodes(name: str) -> None:
    data = stored(vectors()["offers"][name]["file"])
    decoded = Offer.decode(data)
    assert decoded == expected_offer(name), CHANGED
    assert decoded.encode() == data  # the stored bytes are canonical: a fixed point of decode + encode


def test_the_offer_vectors_are_one_conversation() -> None:
    """The documents fit together as the protocol uses them (so the set covers what a real exchange sends)."""
    invite, accept = expected_offer("invite"), expected_offer("accept")
    refuse, notice, withdraw = expected_offer("refuse"), expected_offer("notice"), expected_offer("withdraw")
    session = vectors()["session"]
    assert invite.kind == "invite" and invite.reply_to is None and len(invite.exports) == 2
    assert invite.key is not None and invite.key.hex() == vectors()["x25519"]["alice_public"]
    assert accept.key is not None and accept.key.hex() == vectors()["x25519"]["bob_public"]
    assert (invite.nonce.hex(), accept.nonce.hex()) == (session["invite_nonce"], session["accept_nonce"])
    assert accept.kind == "accept" and accept.reply_to == invite.nonce and accept.recipient == invite.sender
    assert refuse.kind == "refuse" and refuse.reply_to == invite.nonce and refuse.sender == invite.recipient
    assert refuse.reason is not None and not refuse.reason.isascii()  # pins the \u escapes of ensure_ascii
    assert notice.kind == "refuse" and notice.reply_to is None and notice.endpoint is None
    # as OfferExchange._withdraw makes it: the initiator refuses its own invite
    assert withdraw.kind == "refuse" and withdraw.sender == invite.sender and withdraw.reply_to == invite.nonce
    assert withdraw.reason == "withdrawn: the initiator stopped waiting"
    assert b"\\u00eb" in stored("offer-refuse.json") and stored("offer-refuse.json").isascii()


def test_the_relayed_offers_carry_the_path_fields() -> None:
    """A symmetric initiator that holds a TURN allocation, and the acceptor that chose the relay."""
    invite, accept = expected_offer("invite-relayed"), expected_offer("accept-relayed")
    assert invite.relay is not None and invite.path is None and invite.filtering == "address-and-port-dependent"
    assert accept.path == "relayed" and accept.relay is None and accept.reply_to == invite.nonce
    assert b'"relay":["' in stored("offer-invite-relayed.json")
    assert b'"path":"relayed"' in stored("offer-accept-relayed.json")


# -- sealed documents --------------------------------------------------------------------------------------------


def test_plain_document() -> None:
    entry = vectors()["sealed"]["none"]
    offer, data = stored(entry["offer"]), stored(entry["file"])
    assert PlainAuthenticator().seal(offer, Peer(entry["peer"])) == data, CHANGED
    assert PlainAuthenticator().open(data).offer == offer


def test_psk_document_seals_to_the_stored_bytes() -> None:
    entry = vectors()["sealed"]["psk"]
    offer, data = stored(entry["offer"]), stored(entry["file"])
    assert PskAuthenticator(entry["psk"]).seal(offer, Peer(entry["peer"])) == data, CHANGED
    # a peer's own key and the profile's key are the same HKDF of the psk string
    assert PskAuthenticator(peers={entry["peer"]: entry["psk"]}).seal(offer, Peer(entry["peer"])) == data


def test_psk_document_opens_and_vouches() -> None:
    entry = vectors()["sealed"]["psk"]
    offer, data = stored(entry["offer"]), stored(entry["file"])
    sender = Offer.decode(offer).sender
    receiver = PskAuthenticator(peers={sender: entry["psk"]})  # bob's side: alice's own key
    opened = receiver.open(data)
    assert opened.offer == offer and opened.psk_peers == {sender}
    assert receiver.vouch(opened, Peer(sender))
    assert PskAuthenticator(entry["psk"]).open(data).psk_default
    with pytest.raises(AuthError):
        PskAuthenticator("a different pre-shared key").open(data)


def test_psk_document_rejects_every_flipped_bit_of_offer_and_mac() -> None:
    entry = vectors()["sealed"]["psk"]
    fields = json.loads(stored(entry["file"]))
    receiver = PskAuthenticator(entry["psk"])
    for part in ("offer", "mac"):
        original = base64.b64decode(fields[part])
        for bit in range(len(original) * 8):
            flipped = bytearray(original)
            flipped[bit // 8] ^= 1 << (bit % 8)
            document = json.dumps({**fields, part: base64.b64encode(flipped).decode()}, sort_keys=True,
                                  separators=(",", ":")).encode()
            with pytest.raises(AuthError):
                receiver.open(document)
                pytest.fail(f"{part} bit {bit} flipped and the document still verifies")


def smime_entry() -> dict[str, Any]:
    entry: dict[str, Any] = vectors()["sealed"]["smime"]
    return entry


def test_smime_document_unseals_to_the_stored_offer() -> None:
    """S/MIME encryption is randomized, so only decrypting and verifying the stored blob is checked."""
    entry = smime_entry()
    recipient = smime.load_identity(DATA / entry["recipient"]["certificate"], DATA / entry["recipient"]["key"])
    sender = smime.load_certificate(DATA / entry["sender"]["certificate"])
    content, signer = smime.unseal(stored(entry["file"]), recipient, [])  # the signer's certificate is embedded
    assert content == stored(entry["offer"]), CHANGED
    assert smime.fingerprint(signer) == smime.fingerprint(sender) == bytes.fromhex(entry["sender"]["fingerprint"])
    assert Offer.decode(content) == expected_offer("invite")


def test_smime_document_through_the_authenticator() -> None:
    entry = smime_entry()
    recipient = smime.load_identity(DATA / entry["recipient"]["certificate"], DATA / entry["recipient"]["key"])
    alice = Peer("alice", certificate=DATA / entry["sender"]["certificate"])
    authenticator = SmimeAuthenticator(recipient, (alice,), [])
    opened = authenticator.open(stored(entry["file"]))
    assert opened.offer == stored(entry["offer"])
    assert authenticator.vouch(opened, alice)  # pinned: fingerprint and validity "now" (see the next test)
    assert not authenticator.vouch(opened, Peer("mallory", certificate=DATA / entry["recipient"]["certificate"]))


def test_smime_test_certificates_never_expire() -> None:
    """vouch checks the validity window against the current time, so the test identities span 2000..9999
    (fixed dates, not relative to when they were made); unseal itself checks no time at all."""
    for role in ("sender", "recipient"):
        certificate = smime.load_certificate(DATA / smime_entry()[role]["certificate"])
        assert certificate.not_valid_before_utc <= datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
        assert certificate.not_valid_after_utc.year == 9999


def test_smime_document_is_not_for_the_sender() -> None:
    entry = smime_entry()
    sender = smime.load_identity(DATA / entry["sender"]["certificate"], DATA / entry["sender"]["key"])
    with pytest.raises(smime.SmimeError, match="not encrypted to our certificate"):
        smime.unseal(stored(entry["file"]), sender, [])
