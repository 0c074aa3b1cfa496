"""The lab's TURN relays are real coturn: long-term credentials per site user, the TURN REST shared-secret
scheme, relayed ports in their ranges, relaying to lab peers, and ``turn.allocations`` counting live ones.
Every allocation here is made by aioice's TURN client inside a site namespace, behind the site's real NAT."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from plexus.lab import Lab, profiles, turn
from plexus.lab.topology import SITE_USERS, TURN_RELAY_PORTS

# Runs in a site: allocate on SERVER as USER with PASSWORD (taken from the environment variable named, "rest:"
# + the name for TURN REST credentials from $PLEXUS_TURN_SECRET), print the addresses as JSON; then, if asked,
# send b"ping" to PEER through the relay and print what comes back, and wait until RELEASE exists; then delete
# the allocation.
CLIENT = r"""
import asyncio, json, os, sys, time
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint
from plexus.lab.turn import rest_credentials

server, user, password, peer, release = sys.argv[1:6]
host, port = server.rsplit(":", 1)
if user.startswith("rest:"):
    ttl = float(password)
    user, password = rest_credentials(os.environ["PLEXUS_TURN_SECRET"], user[5:], ttl=ttl)
else:
    password = os.environ.get(password, password)

class Receiver(asyncio.DatagramProtocol):
    def __init__(self):
        self.got = asyncio.get_running_loop().create_future()
    def datagram_received(self, data, addr):
        if not self.got.done():
            self.got.set_result([data.decode(), list(addr)])

async def main():
    try:
        transport, receiver = await create_turn_endpoint(Receiver, (host, int(port)), user, password)
    except TransactionFailed as error:
        print(json.dumps({"error": error.response.attributes["ERROR-CODE"][0]}), flush=True)
        return
    print(json.dumps({"relayed": list(transport.get_extra_info("sockname")),
                      "mapped": list(transport.get_extra_info("related_address"))}), flush=True)
    if peer != "-":
        peer_host, peer_port = peer.rsplit(":", 1)
        transport.sendto(b"ping", (peer_host, int(peer_port)))
        print(json.dumps({"received": await asyncio.wait_for(receiver.got, 5)}), flush=True)
    while release != "-" and not os.path.exists(release):
        await asyncio.sleep(0.02)
    transport.close()
    await asyncio.sleep(0.3)  # the zero-lifetime Refresh deletes the allocation
    print(json.dumps({"deleted": True}), flush=True)

asyncio.run(main())
"""


def allocate(lab: Lab, site: str, server: tuple[str, int], user: str, password: str,
             env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Allocate and delete at once; ``password`` names an environment variable (secrets stay out of argv)
    or is a wrong password."""
    done = lab.run(site, [sys.executable, "-c", CLIENT, f"{server[0]}:{server[1]}", user, password, "-", "-"],
                   timeout=30, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.lab
def test_long_term_credentials_allocate_behind_the_nat(lab: Lab) -> None:
    for site in ("a", "b"):
        answers = allocate(lab, site, lab.turn_server, SITE_USERS[site], "PLEXUS_TURN_PASSWORD")
        relayed, mapped = answers[0]["relayed"], answers[0]["mapped"]
        assert relayed[0] == lab.turn_server[0]
        assert TURN_RELAY_PORTS["turn"][0] <= relayed[1] <= TURN_RELAY_PORTS["turn"][1]
        assert mapped[0] == lab.public_address(site)  # the server saw the NAT's public address
        assert answers[-1] == {"deleted": True}


@pytest.mark.lab
def test_wrong_or_foreign_credentials_are_refused(lab: Lab) -> None:
    assert allocate(lab, "a", lab.turn_server, "alice", "not-the-password") == [{"error": 401}]
    bobs = lab.turn_password("b")
    assert bobs != lab.turn_password("a")
    assert allocate(lab, "a", lab.turn_server, "alice", "BOBS", env={"BOBS": bobs}) == [{"error": 401}]
    assert allocate(lab, "a", lab.turn_server, "mallory", "PLEXUS_TURN_PASSWORD") == [{"error": 401}]
    # the long-term password is no use on the REST server, and REST credentials none on the long-term one
    assert allocate(lab, "a", lab.turn_rest_server, "alice", "PLEXUS_TURN_PASSWORD") == [{"error": 401}]
    assert allocate(lab, "a", lab.turn_server, "rest:alice", "600") == [{"error": 401}]


@pytest.mark.lab
def test_rest_credentials_from_the_shared_secret(lab: Lab) -> None:
    answers = allocate(lab, "c", lab.turn_rest_server, "rest:carol", "600")
    relayed = answers[0]["relayed"]
    assert relayed[0] == lab.turn_rest_server[0]
    assert TURN_RELAY_PORTS["turn-rest"][0] <= relayed[1] <= TURN_RELAY_PORTS["turn-rest"][1]
    assert allocate(lab, "c", lab.turn_rest_server, "rest:carol", "-60") == [{"error": 401}]  # expired
    username, password = turn.rest_credentials("not-the-secret", "carol")  # no secret of the lab's
    assert allocate(lab, "c", lab.turn_rest_server, username, password) == [{"error": 401}]
    username, password = turn.rest_credentials(lab.turn_secret(), "carol", ttl=600, now=1_000_000_000)
    assert username == "1000000600:carol" and len(password) == 28  # base64 of a 20-byte HMAC-SHA1


@pytest.mark.lab
def test_the_relay_carries_data_to_a_lab_peer(lab: Lab) -> None:
    with lab.socket("srv") as peer:
        peer.bind((lab.stun_primary[0], 0))
        peer.settimeout(5)
        host, port = peer.getsockname()
        process = lab.spawn("a", [sys.executable, "-c", CLIENT, f"{lab.turn_server[0]}:{lab.turn_server[1]}",
                                  "alice", "PLEXUS_TURN_PASSWORD", f"{host}:{port}", "-"])
        try:
            data, relayed = peer.recvfrom(100)
            assert data == b"ping" and relayed[0] == lab.turn_server[0]
            peer.sendto(b"pong", relayed)
            output, _ = process.communicate(timeout=10)
        finally:
            lab.stop(process)
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["relayed"] == list(relayed)
    assert lines[1] == {"received": ["pong", [host, port]]}


@pytest.mark.lab
def test_allocations_counts_a_live_allocation_until_it_is_deleted(lab: Lab, tmp_path: Path) -> None:
    assert turn.wait_allocations(lab, 0) == 0, "an allocation of an earlier test is still live"
    release = tmp_path / "release"
    process = lab.spawn("b", [sys.executable, "-c", CLIENT, f"{lab.turn_server[0]}:{lab.turn_server[1]}", "bob",
                              "PLEXUS_TURN_PASSWORD", "-", str(release)])
    try:
        assert process.stdout is not None
        assert "relayed" in json.loads(process.stdout.readline())
        assert turn.allocations(lab) == 1 and turn.allocations(lab.state) == 1
        assert turn.allocations(lab, "turn-rest") == 0
        release.touch()
        assert json.loads(process.stdout.readline()) == {"deleted": True}
        assert turn.wait_allocations(lab, 0) == 0
    finally:
        lab.stop(process)


@pytest.mark.lab
def test_secrets_stay_in_private_files(lab: Lab) -> None:
    for name in [*(turn.password_name(user) for user in SITE_USERS.values()), turn.SECRET_NAME]:
        assert oct((lab.state.passwords / name).stat().st_mode & 0o777) == "0o600"
    for label in turn.LABELS:
        config = lab.state.etc / f"{label}.conf"
        assert oct(config.stat().st_mode & 0o777) == "0o600"
        argv = Path(f"/proc/{lab.state.pids()[label]}/cmdline").read_bytes().split(b"\0")
        assert b"-c" in argv and not any(secret.encode() in word for word in argv for secret in
                                         [lab.turn_secret(), *(lab.turn_password(s) for s in "abc")])
    assert f"user=alice:{lab.turn_password('alice')}" in (lab.state.etc / "turn.conf").read_text()
    assert f"static-auth-secret={lab.turn_secret()}" in (lab.state.etc / "turn-rest.conf").read_text()
    assert len({lab.turn_password(s) for s in "abc"} | {lab.turn_secret(), lab.password("a")}) == 5
    env = lab.env("b")
    assert (env["PLEXUS_TURN_PASSWORD"], env["PLEXUS_TURN_SECRET"]) == (lab.turn_password("bob"), lab.turn_secret())


@pytest.mark.lab
def test_servers_answer_an_unauthenticated_allocate_with_401(lab: Lab) -> None:
    from plexus.lab import system

    codes = system.in_netns(lab.ns("a"), lambda: [turn.challenge(lab.turn_server, 1.0),
                                                   turn.challenge(lab.turn_rest_server, 1.0)])
    assert codes == [401, 401]
    assert system.in_netns(lab.ns("a"), lambda: turn.challenge((lab.turn_server[0], 9), 0.3)) is None
    assert lab.status()["turn"]["long_term"] == "198.18.0.12:3478"


@pytest.mark.lab
def test_site_profiles_name_the_relay(lab: Lab, tmp_path: Path) -> None:
    for site, (name, _, _) in profiles.SITE_PROFILES.items():
        document = yaml.safe_load((lab.profile_dir(site) / f"{name}.yaml").read_text())
        assert document["relay"] == {"policy": "fallback", "servers": [
            {"url": "turn:198.18.0.12:3478", "username": SITE_USERS[site],
             "password": {"env": "PLEXUS_TURN_PASSWORD"}}]}
        assert document["punch"]["hops"] == lab.topology.punch_hops(site)
    rest = yaml.safe_load(lab.write_profile("a", "bob-rest", relay_auth="rest", directory=tmp_path).read_text())
    assert rest["relay"] == {"policy": "fallback", "servers": [
        {"url": "turn:198.18.0.12:3479", "secret": {"env": "PLEXUS_TURN_SECRET"}}]}


def test_turn_config_without_a_lab(tmp_path: Path) -> None:
    from plexus.lab.state import LabState

    state = LabState("x", root=tmp_path)
    state.create()
    turn.write_config(state)
    assert turn.allocations(state) == 0  # no log yet
    lines = (state.etc / "turn.conf").read_text().splitlines()
    assert {"lt-cred-mech", "realm=plexus.test", "listening-ip=198.18.0.12", "relay-ip=198.18.0.12",
            "min-port=49152", "max-port=49499", "no-tls", "no-dtls", "no-cli", "verbose",
            "denied-peer-ip=0.0.0.0-255.255.255.255", "allowed-peer-ip=198.18.0.0-198.19.255.255"} <= set(lines)
    rest = (state.etc / "turn-rest.conf").read_text().splitlines()
    assert "use-auth-secret" in rest and "lt-cred-mech" not in rest and "listening-port=3479" in rest
    (state.logs / "turn.log").write_text(
        "1: : session 001: new, realm=<plexus.test>, username=<alice>, lifetime=600\n"
        "1: : session 002: new, realm=<plexus.test>, username=<bob>, lifetime=600\n"
        "2: : session 001: delete: realm=<plexus.test>, username=<alice>\n"
        "3: : session 003: realm <plexus.test> user <>: incoming packet message processed, error 401\n")
    assert turn.allocations(state) == 1
