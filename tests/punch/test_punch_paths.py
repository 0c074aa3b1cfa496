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


@pytest.mark.parametrize(("ours", "theirs", "who"), [("endpoint-independent", "address-and-port-dependent", "carol is"),
                                                     ("address-dependent", "unknown", "bob is"),
                                                     ("address-dependent", "address-and-port-dependent",
                                                      "bob and carol are")])
def test_a_hard_nat_toward_a_nated_peer_has_no_direct_path(ours: str, theirs: str, who: str) -> None:
    reason = direct_plan(ours, theirs, us="bob", them="carol")
    assert isinstance(reason, str) and reason.startswith(f"{NO_PATH} between bob ({ours} mapping) and carol")
    assert f"{who} behind a NAT that gives a new public port per destination" in reason


def test_a_mapping_name_we_do_not_know_is_tried() -> None:
    assert direct_plan("endpoint-independent", "something-new", us="bob", them="alice") == Plan(lead=False)
