"""The packaged systemd unit (parsed, and checked by ``systemd-analyze verify``: it is on Debian 12 with systemd)
and ``plexus service install`` into a temporary root (no system file is touched, systemctl is a fake)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from plexus.cli import main
from plexus.resources import systemd_unit_path
from plexus.service.unit import UNIT_NAME, unit_text

REPO_UNIT = Path(__file__).resolve().parents[2] / "systemd" / UNIT_NAME


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (a key given twice has two); commented settings under "#"."""
    sections: dict[str, dict[str, list[str]]] = {"#": {}}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(("#", ";")):
            key, equals, value = line.lstrip("#; ").partition("=")
            if equals and key.isalpha():
                sections["#"].setdefault(key, []).append(value)
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"line {number}: {raw!r}"
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert equals and current is not None and not raw.endswith("\\"), f"line {number}: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key)
    assert values is not None and len(values) == 1, (key, values)
    return values[0]


def test_the_packaged_unit_is_the_repositorys() -> None:
    assert systemd_unit_path().read_text() == REPO_UNIT.read_text()


def test_the_unit_says_what_plexus_needs() -> None:
    unit = parse(unit_text())
    service = unit["Service"]
    assert one(unit["Unit"], "After") == "network-online.target" == one(unit["Unit"], "Wants")
    expected = {"Type": "notify", "NotifyAccess": "main", "ExecStart": "/usr/bin/env plexus up %i",
                "Restart": "on-failure", "RestartSec": "5", "RestartPreventExitStatus": "2",
                "SuccessExitStatus": "130 143", "KillMode": "mixed", "StateDirectory": "plexus",
                "RuntimeDirectoryPreserve": "yes", "NoNewPrivileges": "yes",
                "CapabilityBoundingSet": "CAP_NET_ADMIN CAP_NET_RAW", "DevicePolicy": "closed",
                "DeviceAllow": "/dev/net/tun rw", "ProtectSystem": "strict", "ProtectHome": "read-only",
                "PrivateTmp": "yes", "StateDirectoryMode": "0700", "RuntimeDirectoryMode": "0700"}
    assert {key: one(service, key) for key in expected} == expected
    assert service["RuntimeDirectory"] == ["plexus", "wireguard"]  # wireguard-go's control socket
    assert "AF_NETLINK" in one(service, "RestrictAddressFamilies").split()
    assert {"WatchdogSec", "AmbientCapabilities", "User"} <= set(unit["#"])  # offered, commented out
    assert "WatchdogSec" not in service and "AmbientCapabilities" not in service
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_a_user_unit_leaves_out_what_needs_privileges() -> None:
    unit = parse(unit_text(user=True))
    service = unit["Service"]
    for key in ("CapabilityBoundingSet", "DeviceAllow", "DevicePolicy", "ProtectSystem", "ProtectHome",
                "PrivateTmp", "AmbientCapabilities"):
        assert key not in service and key not in unit["#"], key
    assert service["RuntimeDirectory"] == ["plexus"]
    assert one(service, "Type") == "notify" and one(service, "NoNewPrivileges") == "yes"
    assert one(unit["Install"], "WantedBy") == "default.target"


@pytest.mark.parametrize("user", [False, True])
def test_systemd_analyze_verify_accepts_it(tmp_path: Path, user: bool) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: scripts/install-debian.sh installs systemd"
    (tmp_path / UNIT_NAME).write_text(unit_text(user=user))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    done = subprocess.run([analyze, *(["--user"] if user else []), "verify", str(tmp_path / "plexus@alice.service")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake systemctl first on PATH: it records its arguments, one call per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.calls"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    fake.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return calls


def test_install_writes_the_unit_below_root_and_prints_the_systemctl_line(
        tmp_path: Path, systemctl: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert main(["service", "install", "alice", "--root", str(root)]) == 0
    out, err = capsys.readouterr()
    unit = root / "etc/systemd/system" / UNIT_NAME
    assert unit.read_text() == REPO_UNIT.read_text() and stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert out == f"systemctl --root={root} enable plexus@alice\n"
    assert f"wrote {unit}" in err and "no profile 'alice' in" in err and not systemctl.exists()
    (root / "etc/plexus/profiles").mkdir(parents=True)
    (root / "etc/plexus/profiles/alice.yaml").write_text("version: 1\n")
    assert main(["service", "install", "alice", "--root", str(root)]) == 0
    err = capsys.readouterr().err
    assert f"unchanged {unit}" in err and "no profile" not in err


def test_install_enable_runs_systemctl_only_then(tmp_path: Path, systemctl: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert main(["service", "install", "alice", "--root", str(root), "--enable"]) == 0
    assert systemctl.read_text() == f"--root={root} enable plexus@alice\n"
    assert "enabled plexus@alice" in capsys.readouterr().err


def test_install_for_a_user_and_with_another_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/home/someone/.config")
    root = tmp_path / "root"
    program = "/opt/plexus env/bin/plexus"
    assert main(["service", "install", "bob", "--user", "--root", str(root), "--exec", program]) == 0
    unit = root / "home/someone/.config/systemd/user" / UNIT_NAME
    text = unit.read_text()
    assert 'ExecStart="/opt/plexus env/bin/plexus" up %i' in text and "CapabilityBoundingSet" not in text
    assert capsys.readouterr().out == f"systemctl --user --root={root} enable plexus@bob\n"


def test_dry_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    assert main(["service", "install", "alice", "--root", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# would write {root}/etc/systemd/system/{UNIT_NAME} (new)\n")
    assert REPO_UNIT.read_text() in out and not root.exists()


def test_install_refuses_a_changed_unit_without_force_and_odd_names(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    unit = root / "etc/systemd/system" / UNIT_NAME
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    assert main(["service", "install", "alice", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "exists and differs" in err and "--force" in err and len(err.splitlines()) == 1
    assert main(["service", "install", "alice", "--root", str(root), "--force"]) == 0
    assert unit.read_text() == REPO_UNIT.read_text()
    assert main(["service", "install", "../etc", "--root", str(root)]) == 2
    assert main(["service", "install", "alice", "--root", str(root), "--exec", "plexus"]) == 1
    assert main(["service", "install", "alice", "--user", "--root", str(root), "--enable"]) == 1
    assert main(["service"]) == 1
