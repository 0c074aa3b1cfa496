"""TURN credentials (plexus/relay/credentials.py): the REST shared-secret scheme against a golden vector made
with the standard library alone (tests/data/turn_rest.json, tests/data/make_golden.py), and the login a
``TurnServer`` gives: long-term (inline or environment password) or REST."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from plexus.errors import ProfileError
from plexus.profile.model import SecretRef, TurnServer
from plexus.relay import credentials_for, rest_credentials
from plexus.relay.credentials import REST_TTL

GOLDEN: dict[str, Any] = json.loads((Path(__file__).parents[1] / "data" / "turn_rest.json").read_text())


def server(**login: Any) -> TurnServer:
    return TurnServer("turn:127.0.0.1:13590", "127.0.0.1", 13590, **login)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda case: case["name"])
def test_rest_credentials_match_the_golden_vector(case: dict[str, Any]) -> None:
    username, password = rest_credentials(GOLDEN["secret"], case["name"], now=GOLDEN["now"], ttl=case["ttl"])
    assert (username, password) == (case["username"], case["password"])


def test_rest_username_is_expiry_colon_name_and_ignores_fractions_of_now() -> None:
    username, password = rest_credentials("s3cret", "alice", now=1000.9, ttl=60)
    assert username == "1060:alice"  # int(now) + ttl: a whole second, as coturn parses it
    assert base64.b64decode(password) == hmac.new(b"s3cret", b"1060:alice", hashlib.sha1).digest()


def test_rest_default_ttl_is_a_day_from_now() -> None:
    before = int(time.time())
    username, _ = rest_credentials("s3cret", "alice")
    expiry, name = username.split(":", 1)
    assert name == "alice" and before + REST_TTL <= int(expiry) <= int(time.time()) + REST_TTL
    assert REST_TTL == 24 * 3600


def test_another_secret_or_name_gives_another_password() -> None:
    base = rest_credentials("one", "alice", now=0)[1]
    assert rest_credentials("two", "alice", now=0)[1] != base
    assert rest_credentials("one", "bob", now=0)[1] != base


def test_long_term_inline_password() -> None:
    assert credentials_for(server(username="alice", password=SecretRef("inline", "pw 1")), "ignored") == \
        ("alice", "pw 1")


def test_long_term_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_TEST_TURN_PASSWORD", "from env")
    assert credentials_for(server(username="alice", password=SecretRef("env", "PLEXUS_TEST_TURN_PASSWORD")),
                           "host") == ("alice", "from env")
    monkeypatch.delenv("PLEXUS_TEST_TURN_PASSWORD")
    with pytest.raises(ProfileError, match="PLEXUS_TEST_TURN_PASSWORD is not set"):
        credentials_for(server(username="alice", password=SecretRef("env", "PLEXUS_TEST_TURN_PASSWORD")), "host")


def test_rest_secret_derives_the_login_from_our_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_TEST_TURN_SECRET", GOLDEN["secret"])
    before = int(time.time())
    username, password = credentials_for(server(secret=SecretRef("env", "PLEXUS_TEST_TURN_SECRET")), "laptop")
    expiry = int(username.split(":", 1)[0])
    assert username == f"{expiry}:laptop" and before + REST_TTL <= expiry <= int(time.time()) + REST_TTL
    assert (username, password) == rest_credentials(GOLDEN["secret"], "laptop", now=expiry - REST_TTL)


def test_a_secret_wins_over_a_username_and_password() -> None:
    both = server(username="alice", password=SecretRef("inline", "pw"), secret=SecretRef("inline", "s"))
    username, password = credentials_for(both, "laptop")
    assert username.endswith(":laptop") and password != "pw"


def test_no_login_at_all_is_a_value_error_naming_the_server() -> None:
    with pytest.raises(ValueError, match=re.escape("turn:127.0.0.1:13590 has neither a username and password nor")):
        credentials_for(server(username="alice"), "laptop")
