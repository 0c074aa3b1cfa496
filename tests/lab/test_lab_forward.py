"""What the forward tests stand on: a real sshd on site b (127.0.0.1:22, the lab's client key only), commands run
as a normal user in a site (``lab exec --user``, ``Lab.run(..., user=)``: no capabilities, the lab environment,
a HOME and state folder of its own, no access to the lab's secrets), and the forward profiles ``lab up`` writes.

The lab user must reach this Python and plexus: where the interpreter lies under a 0700 folder (pyenv under
/root), the ``reachable`` fixture gives the folders on the way o+x as .ci/run does, and restores them after."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from plexus.lab import Lab, profiles, sshd, users

USER = users.LAB_USER


def _cli(lab: Lab, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "plexus.cli", "lab", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PLEXUS_LAB_NAME": lab.name})


# -- sshd on b ----------------------------------------------------------------------------------------------


@pytest.mark.lab
def test_sshd_on_b_greets_on_its_loopback_and_takes_the_lab_key(lab: Lab) -> None:
    assert lab.status()["daemons"]["sshd"]["alive"] is True
    assert sshd.banner(lab.ns("b")).startswith(b"SSH-2.0-OpenSSH")
    assert sshd.banner(lab.ns("b"), (lab.host_address("b"), lab.ssh_port)) == b""  # loopback only
    assert sshd.banner(lab.ns("a")) == b""  # a's loopback is a's own
    done = lab.run("b", ["ssh", "-i", str(lab.ssh_client_key), "-o", "BatchMode=yes",
                         "-o", f"UserKnownHostsFile={lab.known_hosts}", "-p", str(lab.ssh_port),
                         f"{lab.ssh_user}@127.0.0.1", "true"])
    assert done.returncode == 0, done.stderr
    done = lab.run("b", lab.ssh_command("id", "-un"))
    assert (done.returncode, done.stdout.strip()) == (0, USER), done.stderr


@pytest.mark.lab
def test_sshd_refuses_passwords_root_and_other_keys(lab: Lab, tmp_path: Path) -> None:
    no_key = ["-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive"]
    done = lab.run("b", [*lab.ssh_command("true")[:1], *no_key, *lab.ssh_command("true")[1:]])
    assert done.returncode == 255 and "Permission denied (publickey)" in done.stderr, done.stderr
    done = lab.run("b", lab.ssh_command("true", user="root"))
    assert done.returncode == 255 and "Permission denied" in done.stderr, done.stderr
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    argv = lab.ssh_command("true")
    argv[argv.index("-i") + 1] = str(other)
    done = lab.run("b", argv)
    assert done.returncode == 255 and "Permission denied" in done.stderr, done.stderr


@pytest.mark.lab
def test_sshd_runs_on_the_labs_own_files(lab: Lab) -> None:
    config = sshd.config_file(lab.state)
    pid = lab.state.pids()["sshd"]
    title = Path(f"/proc/{pid}/cmdline").read_bytes().decode()  # sshd shows its argv in its process title
    assert title.startswith(f"sshd: {sshd.SSHD} -D -e -f {config} [listener]"), title
    assert (sshd.ssh_dir(lab.state) / "sshd.pid").read_text().strip() == str(pid)
    text = config.read_text()
    for line in ("ListenAddress 127.0.0.1:22", "PasswordAuthentication no", "UsePAM no", "PermitRootLogin no",
                 f"AllowUsers {USER}", "AuthenticationMethods publickey"):
        assert f"\n{line}\n" in text
    assert "/etc/ssh" not in text.replace("nothing under /etc/ssh", "")
    key, host_key = os.stat(lab.ssh_client_key), os.stat(sshd.ssh_dir(lab.state) / "host_ed25519_key")
    assert (stat.S_IMODE(key.st_mode), key.st_uid) == (0o600, pwd.getpwnam(USER).pw_uid)
    assert (stat.S_IMODE(host_key.st_mode), host_key.st_uid) == (0o600, 0)
    host_public = (sshd.ssh_dir(lab.state) / "host_ed25519_key.pub").read_text().split()[1]
    names, _, known = lab.known_hosts.read_text().split()
    assert known == host_public and set(names.split(",")) >= {"127.0.0.1", "[127.0.0.1]:2222"}


# -- a normal user in a site ----------------------------------------------------------------------------------


@pytest.mark.lab
def test_exec_user_has_no_root_and_no_capabilities(lab: Lab, reachable: None) -> None:
    uid = pwd.getpwnam(USER).pw_uid
    assert uid != 0
    done = lab.run("b", ["sh", "-c", "id -u; cat /proc/self/status"], user=USER)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(uid)
    caps = dict(line.split(":\t") for line in lines if line.startswith("Cap"))
    for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(caps[name], 16) == 0, caps
    done = _cli(lab, "exec", "--user", USER, "a", "--", "sh", "-c", "id -u; grep CapEff /proc/self/status; "
                "ip -4 -br addr show eth0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [str(uid), "CapEff:\t0000000000000000"]
    assert lab.host_address("a") in done.stdout  # in site a's namespace


ENV_PROBE = r"""
import json, os, pathlib
for key in ("HOME", "PLEXUS_STATE_DIR"):
    pathlib.Path(os.environ[key], "probe").write_text("written")
print(json.dumps(dict(os.environ)))
"""


@pytest.mark.lab
def test_exec_user_has_the_lab_env_and_folders_of_its_own(lab: Lab, reachable: None) -> None:
    entry = pwd.getpwnam(USER)
    done = lab.run("c", ["python3", "-c", ENV_PROBE], user=USER)  # python3: found first on the user's PATH
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)
    root_env = lab.env("c")
    for key in ("PLEXUS_PROFILE_PATH", "PLEXUS_MAIL_PASSWORD", "PLEXUS_LAB_LOGIN", "PLEXUS_LAB_CA", "PLEXUS_LAB_PSK",
                "PLEXUS_TURN_PASSWORD", "PLEXUS_TURN_SECRET", "PLEXUS_LAB_NAME", "PYTHONPATH"):
        assert env[key] == root_env[key], key
    assert env["PLEXUS_MAIL_PASSWORD"] == lab.password("c") and env["PLEXUS_TURN_PASSWORD"] == lab.turn_password("c")
    assert (env["HOME"], env["PLEXUS_STATE_DIR"]) == (str(lab.user_home("c")), str(lab.user_state_dir("c")))
    assert env["PLEXUS_STATE_DIR"] != root_env["PLEXUS_STATE_DIR"]
    assert env["USER"] == env["LOGNAME"] == USER
    for folder in (lab.user_home("c"), lab.user_state_dir("c")):
        info = os.stat(folder)
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (entry.pw_uid, entry.pw_gid, 0o700)
        assert (folder / "probe").read_text() == "written" and (folder / "probe").stat().st_uid == entry.pw_uid
    assert lab.user_home("a") != lab.user_home("c")  # per site
    other = lab.run("c", ["ls", str(lab.user_home("c"))], user="nobody")  # and per user
    assert other.returncode != 0 and "Permission denied" in other.stderr


@pytest.mark.lab
def test_exec_user_reads_the_profiles_and_ca_but_no_secret(lab: Lab, reachable: None) -> None:
    state = lab.state
    private = [*state.pki.glob("*.key"), *state.passwords.iterdir(), state.etc / "turn.conf",
               state.etc / "turn-rest.conf", state.mail / "users", sshd.ssh_dir(state) / "host_ed25519_key"]
    assert len(private) > 10
    readable = [lab.ca, lab.certificate("alice"), lab.known_hosts, lab.ssh_client_key,
                *(lab.profile_dir(site) / f"{name}.yaml" for site, name in profiles.FORWARD_PROFILES.items()),
                *(lab.profile_dir(site) / f"{name}.yaml" for site, (name, _, _) in profiles.SITE_PROFILES.items())]
    probe = ("import sys\nfor path in sys.argv[1:]:\n    try:\n        open(path).read(); print('read', path)\n"
             "    except PermissionError:\n        print('denied', path)\n")
    done = lab.run("a", ["python3", "-c", probe, *map(str, private + readable)], user=USER)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"denied {p}" for p in private] + [f"read {p}" for p in readable]
    listing = lab.run("a", ["ls", str(lab.profile_dir("b"))], user=USER)
    assert "alice-forward.yaml" in listing.stdout.split()


@pytest.mark.lab
def test_exec_user_ssh_to_b_with_the_lab_key(lab: Lab, reachable: None) -> None:
    done = lab.run("b", lab.ssh_command("id", "-un"), user=USER)  # the key is the user's own (0600)
    assert (done.returncode, done.stdout.strip()) == (0, USER), done.stderr
    assert "UNPROTECTED" not in done.stderr


@pytest.mark.lab
def test_exec_user_without_access_to_python_says_so_in_one_line(lab: Lab, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(hidden / "venv")],
                   check=True, timeout=60)
    python = str(hidden / "venv" / "bin" / "python3")
    done = _cli(lab, "exec", "--user", USER, "b", "--", "id", "-u", python=python)
    assert done.returncode == 7, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"user {USER} cannot reach the Python interpreter {python}" in done.stderr
    assert "o+x" in done.stderr and ".ci/run" in done.stderr
    assert _cli(lab, "exec", "--user", "no-such-user-x", "b", "--", "true").stderr.strip().endswith(
        "no user 'no-such-user-x' on this machine (useradd --system no-such-user-x, or --user plexus-lab)")


# -- the forward profiles -------------------------------------------------------------------------------------


@pytest.mark.lab
def test_forward_profiles_of_lab_up(lab: Lab) -> None:
    expected = {"b": ("alice-forward", "accept", ["alice", "carol"], ["127.0.0.1:22", "127.0.0.1:8080"]),
                "a": ("bob-forward", "initiate", ["bob"], ["127.0.0.1:8000"]),
                "c": ("bob-forward", "initiate", ["bob"], ["127.0.0.1:8000"])}
    for site, (name, role, peers, expose) in expected.items():
        path = lab.profile_dir(site) / f"{name}.yaml"
        document = yaml.safe_load(path.read_text())
        assert document["payload"] == {"template": "forward", "vars": {"expose": expose}}
        assert document["payload"]["vars"] == profiles.forward_vars(site)
        assert document["role"] == role and [peer["id"] for peer in document["peers"]] == peers
        assert all(set(peer) == {"id", "address"} for peer in document["peers"])  # no certificates, no vars
        rendezvous = document["rendezvous"]
        assert rendezvous["authentication"] == "psk" and rendezvous["psk"] == {"env": "PLEXUS_LAB_PSK"}
        assert "smime" not in rendezvous and str(lab.state.pki / f"{lab.user(site)}.key") not in path.read_text()
        assert document["relay"]["servers"] == [profiles.relay_server(lab.user(site))]
        assert document["host"]["id"] == lab.user(site)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644 and stat.S_IMODE(path.parent.stat().st_mode) == 0o755


@pytest.mark.lab
def test_forward_variants_from_write_profile(lab: Lab) -> None:
    path = lab.write_profile("a", "bob-forward-test", template="forward", authentication="psk",
                             payload={"vars": {"expose": ["127.0.0.1:9000"]}})
    document = yaml.safe_load(path.read_text())
    try:
        assert document["payload"] == {"template": "forward", "vars": {"expose": ["127.0.0.1:9000"]}}
        assert document["rendezvous"]["authentication"] == "psk"
        built = profiles.build_profile(lab.topology, lab.state, "b", role="accept", peers=("alice", "carol"),
                                       authentication="psk", template="forward")
        assert built == yaml.safe_load((lab.profile_dir("b") / "alice-forward.yaml").read_text())
    finally:
        path.unlink()
