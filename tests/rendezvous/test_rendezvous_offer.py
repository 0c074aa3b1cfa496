"""The offer document: canonical encoding, strict decoding, and the session secret derivation."""

from __future__ import annotations

import json
import time

import pytest

from plexus.rendezvous.offer import MAX_OFFER_BYTES, Offer, OfferError
from plexus.rendezvous.secret import Ephemeral, derive


def make_invite(**changes: object) -> Offer:
    fields: dict[str, object] = dict(kind="invite", sender="alice", recipient="bob", nonce=b"n" * 32,
                                     time=1700000000.5, endpoint=("198.18.11.2", 40001),
                                     nat="endpoint-independent", key=b"k" * 32, exports={"fingerprint": "AA:BB"})
    fields.update(changes)
    return Offer(**fields)  # type: ignore[arg-type]


def test_round_trip_is_canonical() -> None:
    offer = make_invite()
    data = offer.encode()
    assert Offer.decode(data) == offer
    assert data == Offer.decode(data).encode()
    document = json.loads(data)
    assert document["plexus"] == 1 and document["from"] == "alice" and document["to"] == "bob"
    assert b" " not in data and list(document) == sorted(document)


def test_accept_and_refuse_round_trip() -> None:
    accept = make_invite(kind="accept", reply_to=b"r" * 32)
    assert Offer.decode(accept.encode()).reply_to == b"r" * 32
    refuse = Offer("refuse", "bob", "alice", b"x" * 32, time.time(), reply_to=b"r" * 32, reason="symmetric NAT")
    assert Offer.decode(refuse.encode()).reason == "symmetric NAT"


def mutate(**changes: object) -> bytes:
    document = json.loads(make_invite().encode())
    for key, value in changes.items():
        if value is ...:
            del document[key]
        else:
            document[key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize("data, expected", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"plexus": 1, "plexus": 1}', "duplicate key"),
    (mutate(plexus=2), "unsupported version"),
    (mutate(plexus=True), "unsupported version"),
    (mutate(kind="hello"), "kind must be"),
    (mutate(**{"from": ""}), "'from'"),
    (mutate(to=7), "'to'"),
    (mutate(nonce="AAAA"), "'nonce' must be 32 bytes"),
    (mutate(nonce="***"), "not valid base64"),
    (mutate(nonce=...), "'nonce' is missing"),
    (mutate(time="now"), "'time'"),
    (mutate(time=True), "'time'"),
    (b'{"plexus":1,"kind":"invite","time":NaN}', "not JSON"),
    (mutate(endpoint=["example.org", 1]), "not an IP address"),
    (mutate(endpoint=["198.18.0.1", 70000]), "[ip, port]"),
    (mutate(endpoint=["198.18.0.1", "1"]), "[ip, port]"),
    (mutate(endpoint=...), "invite without endpoint"),
    (mutate(key=...), "invite without key"),
    (mutate(exports={"a": 1}), "'exports' entry"),
    (mutate(exports=[]), "'exports' must be"),
    (mutate(reply_to="cg==" * 1), "'reply_to' must be 32 bytes"),
    (mutate(extra=1), "unknown field 'extra'"),
    (mutate(kind="accept"), "accept without reply_to"),
    (mutate(kind="refuse"), "refuse without reason"),
    (b"[" * 100000, "more than"),
])
def test_malformed_offers_are_rejected_with_a_reason(data: bytes, expected: str) -> None:
    with pytest.raises(OfferError) as raised:
        Offer.decode(data)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_deep_nesting_is_an_offer_error_not_a_crash() -> None:
    with pytest.raises(OfferError):
        Offer.decode(b"[" * 60000 + b"]" * 60000)


def test_oversize_offer_is_rejected_before_parsing() -> None:
    big = mutate(exports={"x": "y" * 4000}).replace(b"}", b"}" + b" " * MAX_OFFER_BYTES, 1)
    with pytest.raises(OfferError, match="more than"):
        Offer.decode(big)
    with pytest.raises(OfferError, match="more than"):
        make_invite(exports={f"k{i}": "v" * 4000 for i in range(20)}).encode()


def test_both_sides_derive_the_same_secret_and_an_eavesdropper_cannot() -> None:
    initiator, acceptor = Ephemeral(), Ephemeral()
    invite_nonce, accept_nonce = Offer.new_nonce(), Offer.new_nonce()
    ours = derive(initiator.shared(acceptor.public), invite_nonce, accept_nonce, "alice", "bob")
    theirs = derive(acceptor.shared(initiator.public), invite_nonce, accept_nonce, "alice", "bob")
    assert ours == theirs and len(ours.secret) == 32 and len(ours.session_id) == 8
    assert ours.secret[:8] != ours.session_id

    # the mailbox reader has both public keys and both nonces, and any key pair of its own
    eve = Ephemeral()
    guesses = [
        derive(eve.shared(initiator.public), invite_nonce, accept_nonce, "alice", "bob"),
        derive(eve.shared(acceptor.public), invite_nonce, accept_nonce, "alice", "bob"),
        derive(initiator.public, invite_nonce, accept_nonce, "alice", "bob"),
        derive(acceptor.public, invite_nonce, accept_nonce, "alice", "bob"),
        derive(bytes(a ^ b for a, b in zip(invite_nonce, accept_nonce, strict=True)), invite_nonce,
               accept_nonce, "alice", "bob"),
    ]
    assert all(guess.secret != ours.secret and guess.session_id != ours.session_id for guess in guesses)


def test_secret_is_bound_to_nonces_and_ids() -> None:
    initiator, acceptor = Ephemeral(), Ephemeral()
    shared = initiator.shared(acceptor.public)
    base = derive(shared, b"a" * 32, b"b" * 32, "alice", "bob")
    assert derive(shared, b"b" * 32, b"a" * 32, "alice", "bob") != base
    assert derive(shared, b"a" * 32, b"b" * 32, "bob", "alice") != base
    assert derive(shared, b"a" * 32, b"b" * 32, "alic", "ebob") != base


def test_a_low_order_peer_key_is_refused() -> None:
    with pytest.raises(ValueError):
        Ephemeral().shared(bytes(32))
