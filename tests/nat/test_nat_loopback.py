"""The STUN client against a real coturn (RFC 5780: two addresses, alternate port) on loopback.

Loopback has no NAT, so these check the client and the "no NAT" path; the NAT kinds are tested in the lab
(tests/nat/test_nat_lab.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import REPO
from support.stun import OTHER, PRIMARY

from plexus.errors import NatError
from plexus.nat import discover, full_report
from plexus.profile.model import Endpoint, Stun
from plexus.udp import UdpPort


def stun_for(*servers: tuple[str, int], timeout: float = 1.0) -> Stun:
    return Stun(servers=tuple(Endpoint(host, port) for host, port in servers), timeout=timeout, rto=0.05)


@pytest.mark.parametrize("bind", ["127.0.0.1", "0.0.0.0"])
async def test_discover_on_loopback_finds_no_nat(coturn: tuple[str, int], bind: str) -> None:
    async with await UdpPort.bind(Endpoint(bind, 0)) as port:
        found = await discover(port, stun_for(coturn))
        assert found.mapping == "none"
        assert found.inner == found.outer == ("127.0.0.1", port.local[1])
        assert found.other == OTHER
        assert found.server == Endpoint(*coturn)
        assert not port.closed and port._listeners == []  # the port stays for the punch, with no STUN listener


async def test_full_report_tests_filtering_through_the_alternate_address(coturn: tuple[str, int]) -> None:
    report = await full_report(stun_for(coturn), Endpoint("127.0.0.1", 0))
    assert report.mapping == "none" and report.punchable
    assert report.filtering == "endpoint-independent"  # coturn answered from 127.0.0.2:13579 as asked
    assert report.hairpin is None and report.port_preserved
    assert set(report.timings) == {"binding", "mapping", "filtering", "hairpin", "total"}
    assert report.to_json()["public"] == report.to_json()["local"]


async def test_first_good_answer_wins_over_a_silent_server(coturn: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        async with await UdpPort.bind(Endpoint("127.0.0.1", 0)) as port:
            started = time.monotonic()
            found = await discover(port, stun_for(silent.getsockname(), coturn, timeout=2.0))
            assert time.monotonic() - started < 0.5
        assert found.server == Endpoint(*coturn)


async def test_no_answer_names_every_server() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as one, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        silent = [one.getsockname(), two.getsockname()]
        async with await UdpPort.bind(Endpoint("127.0.0.1", 0)) as port:
            with pytest.raises(NatError) as caught:
                await discover(port, stun_for(*silent, timeout=0.2))
    text = str(caught.value)
    assert text.startswith("no STUN server answered")
    assert all(f"no answer from STUN server 127.0.0.1:{number} within 0.2 s" in text for _, number in silent)


async def test_unresolvable_name_is_named(coturn: tuple[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake resolver: a real lookup of an unknown name would ask the machine's DNS server, which the network
    # rule forbids. The lab test resolves for real inside a namespace.
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def fake_getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        if host == "stun.nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return await real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    unknown = Stun(servers=(Endpoint("stun.nowhere.test", 3478),), timeout=0.5)
    async with await UdpPort.bind(Endpoint("127.0.0.1", 0)) as port:
        with pytest.raises(NatError, match=r"stun\.nowhere\.test:3478: the name 'stun\.nowhere\.test' does not "
                                           r"resolve \(Name or service not known\)"):
            await discover(port, unknown)
        mixed = Stun(servers=(Endpoint("stun.nowhere.test", 3478), Endpoint("localhost", coturn[1])), timeout=0.5)
        found = await discover(port, mixed)
    assert found.server == Endpoint("localhost", coturn[1])





def plexus_nat(*args: str, profiles: Path | None = None) -> subprocess.CompletedProcess[str]:
    search = str(profiles) if profiles else "/nonexistent"
    return subprocess.run([sys.executable, "-m", "plexus.cli", "nat", *args], capture_output=True, text=True,
                          timeout=30, cwd=REPO, env={**os.environ, "PLEXUS_PROFILE_PATH": search})


@pytest.fixture
def profiles(tmp_path: Path, coturn: tuple[str, int]) -> Path:
    """The example profiles, with their STUN servers pointed at the loopback coturn (laptop: one server;
    mailbox-base, extended by home-server: an unanswering one first, then coturn)."""
    shutil.copytree(REPO / "profiles" / "examples", tmp_path, dirs_exist_ok=True)
    laptop = tmp_path / "laptop.yaml"
    laptop.write_text(laptop.read_text().replace('servers: ["stun.example.org:3478"]',
                                                 f'servers: ["{coturn[0]}:{coturn[1]}"]\n  rto: 50ms'))
    base = tmp_path / "mailbox-base.yaml"
    base.write_text(base.read_text().replace('servers: ["stun.example.org:3478", "stun2.example.org:3478"]',
                                             f'servers: ["127.0.0.1:9", "{coturn[0]}:{coturn[1]}"]'))
    return tmp_path


def test_cli_takes_stun_settings_from_the_profile(profiles: Path) -> None:
    done = plexus_nat("home-server", "--json", profiles=profiles)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["server"] == f"{PRIMARY[0]}:{PRIMARY[1]}"  # the silent 127.0.0.1:9 lost


def test_cli_without_profile_uses_the_only_stun_setup(profiles: Path) -> None:
    done = plexus_nat("--json", profiles=profiles)
    assert done.returncode == NatError.exit_code
    assert done.stderr == ("plexus: profiles home-server, laptop use different STUN settings (name one PROFILE, "
                           "or give --server)\n")
    (profiles / "home-server.yaml").unlink()
    done = plexus_nat("--json", profiles=profiles)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["mapping"] == "none"


def test_cli_json(coturn: tuple[str, int]) -> None:
    done = plexus_nat("--server", f"{coturn[0]}:{coturn[1]}", "--bind", "127.0.0.1:0", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mapping"] == "none" and report["nat"] is False and report["punchable"] is True
    assert report["verdict"].startswith("hole punching: possible, because there is no NAT")
    assert report["filtering"] == "endpoint-independent" and report["other"] == "127.0.0.2:13579"
    assert report["local"] == report["public"]
    assert set(report["timings_ms"]) == {"binding", "mapping", "filtering", "hairpin", "total"}


def test_cli_table(coturn: tuple[str, int]) -> None:
    done = plexus_nat("--server", f"{coturn[0]}:{coturn[1]}")
    assert done.returncode == 0, done.stderr
    for row in ("local endpoint", "public endpoint", "mapping", "filtering", "hairpin", "hole punching"):
        assert row in done.stdout
    assert "possible, because" in done.stdout


@pytest.mark.parametrize(("args", "expected"), [
    (["--server", "127.0.0.1:9"], "plexus: no answer from STUN server 127.0.0.1:9 within"),
    (["--server", "127.0.0.1:x"], "plexus: --server: '127.0.0.1:x': port must be a number"),
    (["--server", "127.0.0.1:9", "--bind", "nonsense:1"], "plexus: --bind: 'nonsense' is not an IP address"),
    ([], "plexus: no profile found to take the STUN servers from (give PROFILE or --server HOST:PORT)"),
    (["nosuch"], "plexus: profile 'nosuch' not found"),
])
def test_cli_errors_are_one_line(args: list[str], expected: str) -> None:
    done = plexus_nat(*args)
    assert done.returncode == (2 if args == ["nosuch"] else NatError.exit_code)
    assert done.stdout == ""
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr
