"""Offer authentication: S/MIME (pinned certificate or CA), PSK HMAC, none; forged documents never verify."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from support.rendezvous import Pki, make_profile

from plexus.errors import ProfileError
from plexus.profile.model import Peer
from plexus.rendezvous import smime
from plexus.rendezvous.auth import AuthError, PskAuthenticator, SmimeAuthenticator, authenticator_for

OFFER = b'{"from":"alice","plexus":1,"to":"bob"}'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    for name in ("alice", "bob", "mallory"):
        pki.user(name)
    pki.user("alice", self_signed=True, stem="alice-self")
    pki.user("alice", days=-1, stem="alice-expired")
    return pki


def smime_pair(pki: Pki, *, pinned: bool = True) -> tuple[SmimeAuthenticator, SmimeAuthenticator]:
    d = pki.directory
    alice = authenticator_for(make_profile(  # type: ignore[arg-type]
        "alice", [("bob", d / "bob.crt")], method="smime", user=_user(d, "alice"), role="initiate"))
    bob = authenticator_for(make_profile(  # type: ignore[arg-type]
        "bob", [("alice", d / "alice.crt" if pinned else None)], method="smime", user=_user(d, "bob"),
        ca=pki.ca_path))
    assert isinstance(alice, SmimeAuthenticator) and isinstance(bob, SmimeAuthenticator)
    return alice, bob


def _user(directory: Path, name: str) -> object:
    from support.rendezvous import User

    return User(name, directory / f"{name}.crt", directory / f"{name}.key")


@pytest.mark.parametrize("pinned", [True, False])
def test_smime_round_trip_and_vouch(pki: Pki, pinned: bool) -> None:
    alice, bob = smime_pair(pki, pinned=pinned)
    document = alice.seal(OFFER, Peer("bob", "bob@plexus.test"))
    assert OFFER not in document  # encrypted
    opened = bob.open(document)
    assert opened.offer == OFFER
    assert bob.vouch(opened, Peer("alice", "alice@plexus.test", pki.directory / "alice.crt" if pinned else None))
    assert not bob.vouch(opened, Peer("carol", "carol@plexus.test"))  # signed by alice, claims carol
    if not pinned:  # learned from the verified invite: bob can now answer alice without a configured cert
        reply = bob.seal(OFFER, Peer("alice", "alice@plexus.test"))
        assert alice.open(reply).offer == OFFER


def test_smime_forgeries_fail(pki: Pki) -> None:
    alice, bob = smime_pair(pki)
    d = pki.directory
    alice_peer = Peer("alice", "alice@plexus.test", d / "alice.crt")
    # mallory signs with her own key (valid CA cert) and claims to be alice
    mallory = authenticator_for(make_profile(  # type: ignore[arg-type]
        "alice", [("bob", d / "bob.crt")], method="smime", user=_user(d, "mallory")))
    opened = bob.open(mallory.seal(OFFER, Peer("bob")))
    assert not bob.vouch(opened, alice_peer)
    # a self-signed certificate named alice does not chain to the CA (CA mode) nor match the pin
    impostor = authenticator_for(make_profile(  # type: ignore[arg-type]
        "alice", [("bob", d / "bob.crt")], method="smime", user=_user(d, "alice-self")))
    opened = bob.open(impostor.seal(OFFER, Peer("bob")))
    assert not bob.vouch(opened, alice_peer)
    _, bob_ca = smime_pair(pki, pinned=False)
    assert not bob_ca.vouch(bob_ca.open(impostor.seal(OFFER, Peer("bob"))), Peer("alice", "alice@plexus.test"))
    # an expired certificate is refused even when pinned
    expired = authenticator_for(make_profile(  # type: ignore[arg-type]
        "alice", [("bob", d / "bob.crt")], method="smime", user=_user(d, "alice-expired")))
    assert not bob_ca.vouch(bob_ca.open(expired.seal(OFFER, Peer("bob"))), Peer("alice", "alice@plexus.test"))
    # garbage, a document encrypted to someone else, and a flipped byte all fail to open
    with pytest.raises(AuthError):
        bob.open(b"\x30\x03\x02\x01\x00")
    with pytest.raises(AuthError):
        bob.open(smime.seal(OFFER, smime.load_identity(d / "alice.crt", d / "alice.key"),
                            smime.load_certificate(d / "mallory.crt")))
    sealed = bytearray(alice.seal(OFFER, Peer("bob")))
    sealed[len(sealed) // 2] ^= 0x40
    with pytest.raises(AuthError):
        bob.open(bytes(sealed))


def test_smime_altered_content_fails_on_the_digest(pki: Pki) -> None:
    d = pki.directory
    ours = smime.load_identity(d / "bob.crt", d / "bob.key")
    alice = smime.load_identity(d / "alice.crt", d / "alice.key")
    signed = smime.pkcs7.PKCS7SignatureBuilder().set_data(OFFER).add_signer(
        alice.certificate, alice.key, smime.hashes.SHA256()).sign(
        smime.serialization.Encoding.SMIME, [smime.pkcs7.PKCS7Options.DetachedSignature])
    tampered = signed.replace(b'"to":"bob"', b'"to":"eve"')
    blob = smime.pkcs7.PKCS7EnvelopeBuilder().set_data(tampered).add_recipient(ours.certificate).encrypt(
        smime.serialization.Encoding.DER, [])
    with pytest.raises(smime.SmimeError, match="altered"):
        smime.unseal(blob, ours, [])


def test_psk_round_trip_and_forgery() -> None:
    good, other = PskAuthenticator("correct horse battery staple"), PskAuthenticator("another key, also long")
    document = good.seal(OFFER, Peer("bob"))
    assert good.open(document).offer == OFFER
    with pytest.raises(AuthError, match="HMAC"):
        other.open(document)
    fields = json.loads(document)
    fields["offer"] = base64.b64encode(OFFER.replace(b"bob", b"eve")).decode()
    with pytest.raises(AuthError, match="HMAC"):
        good.open(json.dumps(fields).encode())
    for garbage in (b"", b"{}", b"not json", json.dumps({"auth": "none", "offer": "e30="}).encode()):
        with pytest.raises(AuthError):
            good.open(garbage)


def test_profile_errors_are_one_line(pki: Pki, tmp_path: Path) -> None:
    d = pki.directory
    with pytest.raises(ProfileError, match="shorter than 16"):
        authenticator_for(make_profile("bob", [("alice", None)], psk="short"))  # type: ignore[arg-type]
    with pytest.raises(ProfileError, match="does not belong"):
        from support.rendezvous import User

        authenticator_for(make_profile(  # type: ignore[arg-type]
            "bob", [("alice", d / "alice.crt")], method="smime", user=User("x", d / "bob.crt", d / "alice.key")))
    with pytest.raises(ProfileError, match="no certificate and there is no S/MIME CA"):
        authenticator_for(make_profile(  # type: ignore[arg-type]
            "bob", [("alice", None)], method="smime", user=_user(d, "bob")))
    (tmp_path / "bad.crt").write_text("not a certificate")
    with pytest.raises(ProfileError, match="not a PEM or DER certificate"):
        authenticator_for(make_profile(  # type: ignore[arg-type]
            "bob", [("alice", tmp_path / "bad.crt")], method="smime", user=_user(d, "bob")))


def test_plain_offers_warn_every_time(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    for _ in range(2):
        plain = authenticator_for(make_profile("bob", [("alice", None)], method="none"))  # type: ignore[arg-type]
        assert plain.open(plain.seal(OFFER, Peer("bob"))).offer == OFFER
    assert sum("authentication is off" in record.getMessage() for record in caplog.records) == 2
