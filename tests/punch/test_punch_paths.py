"""Which path two peers take from both NAT mappings (``plexus.punch.paths``): pure rules."""

from __future__ import annotations

import pytest

from plexus.punch.paths import NO_PATH, Plan, direct_plan

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
