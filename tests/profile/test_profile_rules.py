"""Rules `plexus validate` shares with `plexus up` (issue: validate passes profiles up refuses): id length, the
CA-mode initiator, per-peer pre-shared keys, a fixed port on an acceptor with several peers."""

from __future__ import annotations

from pathlib import Path

from support.profiles import edit, errors, line_of

from plexus.profile import Problem, load, validate


def warnings(path: Path) -> list[Problem]:
    return [p for p in validate(path) if not p.is_error]


def test_an_id_longer_than_the_offer_layer_takes_is_an_error(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", "id: home-server", "id: " + "h" * 129)
    (problem,) = errors(laptop)
    assert problem.line == line_of(laptop, "h" * 129) and problem.field == "peers[0].id"
    assert "129 characters long, more than 128" in problem.message
    edit(laptop, "id: laptop ", "id: " + "l" * 200 + " ")
    assert any(p.field == "host.id" for p in errors(laptop))


def test_an_initiator_in_ca_mode_needs_the_peers_certificate(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", "    certificate: certs/home.crt", "")
    edit(laptop, "    key: certs/laptop.key", "    key: certs/laptop.key\n    ca: certs/home.crt")
    (problem,) = errors(laptop)
    assert problem.field == "peers[0].certificate" and "must encrypt its invite" in problem.message
    home = edit(examples / "home-server.yaml", "    certificate: certs/laptop.crt\n", "")
    edit(examples / "mailbox-base.yaml", "    key: certs/home.key", "    key: certs/home.key\n    ca: certs/laptop.crt")
    assert errors(home) == []  # an acceptor learns the certificate from the verified invite


SMIME = "  authentication: smime\n  smime:\n    certificate: certs/home.crt\n    key: certs/home.key\n"
LAPTOP = "  - {id: laptop, address: l@example.org, vars: {remote_tunnel: 198.19.0.1}%s}\n"
PHONE = "  - {id: phone, address: p@example.org, vars: {remote_tunnel: 198.19.0.3}%s}\n"


def psk_profile(examples: Path, peers: str, shared: bool = False) -> Path:
    """home-server with authentication psk (the profile's key only when ``shared``) and these peers."""
    home = examples / "home-server.yaml"
    home.write_text(home.read_text().split("peers:")[0] + "peers:\n" + peers
                    + "\npayload:\n  template: openvpn\n  vars: {tunnel: 198.19.0.2}\n")
    edit(examples / "mailbox-base.yaml", SMIME, "  authentication: psk\n" + ("  psk: {env: PSK}\n" if shared else ""))
    return home


def test_psk_peers_with_their_own_keys(examples: Path) -> None:
    own = psk_profile(examples, LAPTOP % ", psk: {env: LAPTOP_PSK}" + PHONE % ", psk: {env: PHONE_PSK}")
    assert errors(own) == [] and not any("serves" in p.message for p in warnings(own))
    profile = load(own)
    assert [str(profile.psk_for(peer)) for peer in profile.peers] == ["SecretRef(env='LAPTOP_PSK')",
                                                                      "SecretRef(env='PHONE_PSK')"]


def test_a_psk_peer_without_a_key_is_an_error(examples: Path) -> None:
    missing = psk_profile(examples, LAPTOP % ", psk: {env: LAPTOP_PSK}" + PHONE % "")
    (problem,) = errors(missing)
    assert problem.field == "peers[1].psk" and "needs the pre-shared key" in problem.message


def test_one_psk_for_several_peers_warns(examples: Path) -> None:
    shared = psk_profile(examples, LAPTOP % "" + PHONE % "", shared=True)
    assert errors(shared) == []
    (warning,) = [p for p in warnings(shared) if "serves" in p.message]
    assert "one pre-shared key serves 2 peers: each of them can pose as the others" in warning.message
    assert warning.field == "rendezvous.psk"


def test_a_fixed_port_on_an_acceptor_with_several_peers_warns(examples: Path) -> None:
    base = examples / "mailbox-base.yaml"
    if "bind:" in base.read_text():
        edit(base, 'bind: "0.0.0.0:0"', 'bind: "0.0.0.0:4500"')
    else:
        edit(base, "  servers:", '  bind: "0.0.0.0:4500"\n  servers:')
    home = examples / "home-server.yaml"
    assert errors(home) == []
    (warning,) = [p for p in warnings(home) if "fixed port" in p.message]
    assert warning.field == "stun.bind" and "the others are refused as busy" in warning.message


async def test_a_fixed_port_acceptor_refuses_a_second_peer_while_one_is_connected(examples: Path) -> None:
    import asyncio
    from dataclasses import replace

    from plexus.profile.model import Endpoint
    from plexus.session.accept import fixed_port_busy as _fixed_port_busy

    profile = load(examples / "home-server.yaml")
    fixed = replace(profile, stun=replace(profile.stun, bind=Endpoint("0.0.0.0", 4500)))
    running = asyncio.get_running_loop().create_task(asyncio.sleep(10))
    try:
        busy = _fixed_port_busy(fixed, {"laptop": running}, "phone")
        assert busy is not None and "fixed UDP port 4500" in busy and "session with laptop" in busy
        assert _fixed_port_busy(fixed, {"laptop": running}, "laptop") is None  # its own new invite replaces it
        assert _fixed_port_busy(profile, {"laptop": running}, "phone") is None  # port 0: a port per session
    finally:
        running.cancel()


def test_extends_naming_a_device_says_so(examples: Path) -> None:
    laptop = edit(examples / "laptop.yaml", "version: 1\n", "version: 1\nextends: /dev/zero\n")
    (problem,) = errors(laptop)
    assert problem.field == "extends" and "/dev/zero is not a regular file" in problem.message
