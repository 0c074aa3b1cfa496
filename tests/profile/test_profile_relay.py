"""The ``relay`` section: TURN URIs, long-term or REST credentials, the policy — what ``validate`` says and what
``load`` builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.profiles import edit, errors, line_of

from plexus.profile import load, validate
from plexus.profile.model import SecretRef, TurnServer

SERVER = "    - url: turn:turn.example.org:3478                            # or turns:HOST:5349 (TLS), ?transport=tcp\n"


def test_the_example_relay_loads(examples: Path) -> None:
    profile = load(str(examples / "laptop.yaml"))
    (server,) = profile.relay.servers
    assert (server.host, server.port, server.transport, server.username) == ("turn.example.org", 3478, "udp",
                                                                              "laptop")
    assert server.password == SecretRef("env", "PLEXUS_TURN_PASSWORD") and server.secret is None
    assert profile.relay.policy == "fallback" and profile.relay.usable and profile.relay.lifetime == 600


def test_no_relay_section_means_no_relay_of_ours(examples: Path) -> None:
    home = load(str(examples / "home-server.yaml"))
    assert home.relay.servers == () and not home.relay.usable and home.relay.policy == "fallback"


@pytest.mark.parametrize("url, expected", [
    ("turn:198.18.0.12", ("198.18.0.12", 3478, "udp")),
    ("turn:turn.example.org:3479?transport=tcp", ("turn.example.org", 3479, "tcp")),
    ("turns:turn.example.org", ("turn.example.org", 5349, "tls")),
    ("turns:turn.example.org:443?transport=tcp", ("turn.example.org", 443, "tls")),
    ("turn:[2001:db8::1]:3478", ("2001:db8::1", 3478, "udp")),
])
def test_turn_uris(url: str, expected: tuple[str, int, str]) -> None:
    assert TurnServer.parse_url(url) == expected


@pytest.mark.parametrize("url, reason", [
    ("stun:turn.example.org", "is not a TURN URI"),
    ("turn:turn.example.org?transport=sctp", "may only be transport=udp or transport=tcp"),
    ("turns:turn.example.org?transport=udp", "turns (TLS) runs over TCP"),
    ("turn:turn.example.org:0", "port 0 is not a server port"),
])
def test_bad_turn_uris_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        TurnServer.parse_url(url)


def test_credentials_are_long_term_or_rest_not_both_nor_half(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", "      password: {env: PLEXUS_TURN_PASSWORD}\n", "")
    (problem,) = errors(laptop)
    assert problem.field == "relay.servers[0].password" and "needs a username and a password" in problem.message
    edit(laptop, "      username: laptop ", "      password: {env: P}\n      secret: {env: S}\n      username: x ")
    (problem,) = errors(laptop)
    assert problem.field == "relay.servers[0]" and "both long-term credentials" in problem.message


def test_a_rest_secret_alone_is_fine_and_inline_secrets_warn(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", "      username: laptop                                           # "
                  "long-term credentials ...\n      password: {env: PLEXUS_TURN_PASSWORD}\n",
                  "      secret: shared-secret-inline\n")
    assert errors(laptop) == []
    (warning,) = [p for p in validate(laptop) if not p.is_error]
    assert warning.field == "relay.servers[0].secret" and "inline" in warning.message
    assert "shared-secret-inline" not in str(warning)
    server = load(str(laptop)).relay.servers[0]
    assert server.secret is not None and server.secret.kind == "inline" and server.username is None


def test_a_bad_uri_points_at_its_line(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", SERVER, "    - url: turns:turn.example.org?transport=udp\n")
    (problem,) = errors(laptop)
    assert problem.field == "relay.servers[0].url" and problem.line == line_of(laptop, "transport=udp")
    assert "turns (TLS) runs over TCP" in problem.message


def test_a_relay_without_servers_must_say_never(examples: Path) -> None:
    text = (examples / "laptop.yaml").read_text()
    start = text.index("relay:")
    end = text.index("payload:")
    (examples / "laptop.yaml").write_text(text[:start] + "relay: {policy: always}\n\n" + text[end:])
    (problem,) = errors(examples / "laptop.yaml")
    assert problem.field == "relay" and "names no TURN server" in problem.message
    (examples / "laptop.yaml").write_text(text[:start] + "relay: {policy: never}\n\n" + text[end:])
    assert errors(examples / "laptop.yaml") == []
    assert not load(str(examples / "laptop.yaml")).relay.usable


def test_the_lifetime_is_bounded(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", "  policy: fallback ", "  lifetime: 2h\n  policy: fallback ")
    (problem,) = errors(laptop)
    assert problem.field == "relay.lifetime" and "between 1m and 1h" in problem.message
