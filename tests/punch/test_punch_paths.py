"""Which path two peers take from both NAT behaviours and their relay settings (``plexus.punch.paths``): pure
rules."""

from __future__ import annotations

import pytest

from plexus.profile.model import Relay, SecretRef, TurnServer
from plexus.punch.paths import NO_PATH, Plan, acceptor_plan, direct_plan, invite_path, paths_from, wants_allocation

EASY = ["none", "endpoint-independent", "unknown"]
HARD = ["address-dependent", "address-and-port-dependent"]


@pytest.mark.parametrize("ours", EASY)
@pytest.mark.parametrize("theirs", EASY)
def test_easy_pairs_punch_directly(ours: str, theirs: str) -> None:
    assert direct_plan(ours, theirs, us="bob", them="alice") == Plan(lead=theirs == "none")


@pytest.mark.parametrize("hard", HARD)
def test_a_hard_nat_reaches_a_public_peer_either_way(hard: str) -> None:
    assert direct_plan("none", hard, us="bob", them="carol") == Plan(lead=False)  # carol's packets find bob
    assert direct_plan(hard, "none", us="bob", them="alice") == Plan(lead=True)  # bob must send first, full TTL


@pytest.mark.parametrize("hard", HARD)
@pytest.mark.parametrize("easy", ["endpoint-independent", "unknown"])
def test_a_hard_nat_toward_an_easy_nat_probes(hard: str, easy: str) -> None:
    assert direct_plan(hard, easy, us="carol", them="bob") == Plan(probe="race")  # many sockets, one wins
    assert direct_plan(easy, hard, us="bob", them="carol") == Plan(probe="spray")  # probes at random ports


def test_two_hard_nats_have_no_direct_path() -> None:
    reason = direct_plan("address-dependent", "address-and-port-dependent", us="bob", them="carol")
    assert isinstance(reason, str)
    assert reason.startswith(f"{NO_PATH} between bob (address-dependent mapping) and carol")
    assert "both are behind NATs that give a new public port per destination" in reason


def test_a_mapping_name_we_do_not_know_is_tried() -> None:
    assert direct_plan("endpoint-independent", "something-new", us="bob", them="alice") == Plan(lead=False)


# -- filtering: a full-cone NAT lets the hard side's packets in, so no probing is needed ------------------------


@pytest.mark.parametrize("hard", HARD)
def test_a_full_cone_peer_is_reached_directly_from_a_hard_nat(hard: str) -> None:
    eif = "endpoint-independent"
    assert direct_plan(hard, "endpoint-independent", us="carol", them="bob", their_filtering=eif) == Plan(lead=True)
    assert direct_plan("endpoint-independent", hard, us="bob", them="carol", our_filtering=eif) == Plan()
    # filtering that is not endpoint-independent still needs the probes
    assert direct_plan("endpoint-independent", hard, us="bob", them="carol",
                       our_filtering="address-dependent") == Plan(probe="spray")


def test_full_cone_filtering_on_a_hard_mapping_does_not_open_it() -> None:
    assert direct_plan("endpoint-independent", "address-dependent", us="bob", them="carol",
                       their_filtering="endpoint-independent") == Plan(probe="spray")


# -- the acceptor's choice, with the relay ---------------------------------------------------------------------

TURN = TurnServer("turn:198.18.0.12:3478", "198.18.0.12", 3478, username="bob", password=SecretRef("env", "X"))
WITH_RELAY = Relay(servers=(TURN,))
NO_RELAY = Relay()
HARD_PAIR = ("address-and-port-dependent", "address-and-port-dependent")


def choose(ours: str, theirs: str, relay: Relay, *, their_relay: bool = False,
           their_path: str | None = None) -> Plan | str:
    return acceptor_plan(ours, theirs, us="bob", them="carol", relay=relay, their_relay=their_relay,
                         their_path=their_path)


def test_two_hard_nats_meet_on_the_initiators_relay_first() -> None:
    assert choose(*HARD_PAIR, WITH_RELAY, their_relay=True) == Plan(relay="theirs")  # no second allocation
    assert choose(*HARD_PAIR, NO_RELAY, their_relay=True) == Plan(relay="theirs")
    assert choose(*HARD_PAIR, WITH_RELAY) == Plan(relay="ours")


def test_two_hard_nats_without_any_relay_are_refused_saying_so() -> None:
    reason = choose(*HARD_PAIR, NO_RELAY)
    assert isinstance(reason, str) and reason.startswith(NO_PATH)
    assert reason.endswith("neither bob nor carol has a TURN relay configured (relay.servers in the profile)")


def test_a_direct_path_is_preferred_under_policy_fallback() -> None:
    assert choose("endpoint-independent", "endpoint-independent", WITH_RELAY, their_relay=True) == Plan()
    assert choose("endpoint-independent", "address-dependent", WITH_RELAY) == Plan(probe="spray")


def test_asking_for_the_relay_or_policy_always_relays_even_easy_pairs() -> None:
    easy = ("endpoint-independent", "endpoint-independent")
    assert choose(*easy, WITH_RELAY, their_path="relayed") == Plan(relay="ours")
    assert choose(*easy, Relay(servers=(TURN,), policy="always")) == Plan(relay="ours")
    reason = choose(*easy, NO_RELAY, their_path="relayed")
    assert isinstance(reason, str) and reason.startswith(NO_PATH) and "carol asked for the relay" in reason


def test_policy_never_on_either_side_is_respected() -> None:
    never = Relay(servers=(TURN,), policy="never")
    refused = choose(*HARD_PAIR, never, their_relay=True)
    assert isinstance(refused, str) and refused.endswith("(relay policy never)")
    assert choose("none", "none", never, their_path="relayed") == \
        "carol needs the relay, but bob's relay policy is never"
    always = Relay(servers=(TURN,), policy="always")
    assert "carol's relay policy is never" in str(choose("none", "none", always, their_path="direct"))
    refused = choose(*HARD_PAIR, WITH_RELAY, their_path="direct")
    assert isinstance(refused, str) and refused.endswith("(relay policy never)")


def test_the_initiator_allocates_when_the_relay_is_certain_or_likely() -> None:
    assert wants_allocation(WITH_RELAY, "address-and-port-dependent", retry=False)
    assert not wants_allocation(WITH_RELAY, "endpoint-independent", retry=False)
    assert wants_allocation(WITH_RELAY, "endpoint-independent", retry=True)
    assert wants_allocation(Relay(servers=(TURN,), policy="always"), "none", retry=False)
    assert not wants_allocation(NO_RELAY, "address-and-port-dependent", retry=True)
    assert invite_path(WITH_RELAY, retry=False) is None
    assert invite_path(WITH_RELAY, retry=True) == "relayed"
    assert invite_path(Relay(policy="never"), retry=True) == "direct"


def test_plexus_nat_names_a_path_toward_every_kind_of_peer() -> None:
    assert set(paths_from("address-and-port-dependent", None).values()) == {
        "direct punch", "direct, by probing (birthday paradox)", "through a TURN relay (relay.servers on either side)"}
    assert set(paths_from("none", None).values()) == {"direct punch"}
