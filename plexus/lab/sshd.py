"""An OpenSSH server on site b (bob's machine), listening on the site's own loopback 127.0.0.1:22 only: the
service a forward profile exposes (``alice-forward`` on b) and a peer opens, e.g. ``ssh -p 2222 127.0.0.1`` in
site a through a forward to b's 127.0.0.1:22.

Everything is the lab's own, under ``ssh/`` in the state directory (nothing in /etc/ssh is read): the config,
the host key, PidFile, and a client key pair whose public half is the only authorized key, for the lab user
``plexus-lab`` only (``users.LAB_USER``). The client key is 0600 and owned by that user, so it can use it from
``lab exec --user``; the host key is root's, 0600. ``known_hosts`` (0644) names b's host key for 127.0.0.1
(port 22) and [127.0.0.1]:2222, so a client needs no prompt: ``Lab.ssh_command`` gives the whole ssh argv.

Public-key authentication only (no passwords, no keyboard-interactive, no root), UsePAM no. StrictModes stays
on: the state directory's folders are root's and not group- or world-writable, which is all it asks.
sshd runs with private mounts (daemons.py) so that its fixed privilege separation directory /run/sshd is made
in a private /run and the machine's is never touched; its config is checked with ``sshd -t`` the same way.
"""

from __future__ import annotations

import os
import pwd
import socket
from pathlib import Path

from plexus.lab import daemons, system, users
from plexus.lab.state import LabState
from plexus.lab.topology import Topology

SITE = "b"
HOST = "127.0.0.1"
SSH_PORT = 22
FORWARD_PORT = 2222  # where a test's forward in another site usually puts b's sshd; in known_hosts too
LABEL = "sshd"
SSHD = "/usr/sbin/sshd"  # an absolute path: sshd re-executes itself
RUN_DIRS = ("sshd",)

_CONFIG = """\
# OpenSSH server of plexus lab {name}, site b: its own files only (nothing under /etc/ssh is used)
ListenAddress {host}:{port}
AddressFamily inet
HostKey {ssh}/host_ed25519_key
PidFile {ssh}/sshd.pid
AuthorizedKeysFile {ssh}/authorized_keys
AllowUsers {user}
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
GSSAPIAuthentication no
PermitEmptyPasswords no
UsePAM no
# the state directory's folders are root's and not group/world-writable: strict checks pass
StrictModes yes
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
PrintMotd no
PrintLastLog no
UseDNS no
LoginGraceTime 20
LogLevel VERBOSE
Subsystem sftp internal-sftp
"""


def ssh_dir(state: LabState) -> Path:
    return state.dir / "ssh"


def client_key(state: LabState) -> Path:
    return ssh_dir(state) / "client_key"


def known_hosts(state: LabState) -> Path:
    return ssh_dir(state) / "known_hosts"


def config_file(state: LabState) -> Path:
    return ssh_dir(state) / "sshd_config"


def _keygen(path: Path, comment: str) -> str:
    """A fresh ed25519 key pair (no passphrase) at ``path`` and ``path``.pub; the public line."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    system.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path.with_name(path.name + ".pub").read_text().strip()


def write_config(topology: Topology, state: LabState, user: pwd.struct_passwd) -> None:
    """Make the host key, the client key pair (for ``user``), authorized_keys, known_hosts and the config."""
    directory = ssh_dir(state)
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)
    host_public = _keygen(directory / "host_ed25519_key", f"plexus-lab-{topology.name}-b-host")
    key = client_key(state)
    client_public = _keygen(key, f"{user.pw_name}@plexus-lab-{topology.name}")
    os.chown(key, user.pw_uid, user.pw_gid)
    key.chmod(0o600)
    (directory / "authorized_keys").write_text(client_public + "\n")
    key_type, key_data = host_public.split()[:2]
    known_hosts(state).write_text(f"{HOST},[{HOST}]:{SSH_PORT},[{HOST}]:{FORWARD_PORT} {key_type} {key_data}\n")
    config = config_file(state)
    config.write_text(_CONFIG.format(name=topology.name, host=HOST, port=SSH_PORT, ssh=directory,
                                     user=user.pw_name))
    for path in (directory / "authorized_keys", known_hosts(state), config, key.with_name(key.name + ".pub")):
        path.chmod(0o644)


def start(topology: Topology, state: LabState, *, wait: bool = True) -> int:
    """Check the config (``sshd -t``), start ``sshd -D -e -f CONFIG`` in site b; with ``wait``, until it
    answers."""
    namespace = topology.ns(SITE)
    daemons.check(state, namespace, LABEL, [SSHD, "-t", "-f", str(config_file(state))], private_mounts=True,
                  run_dirs=RUN_DIRS)
    pid = daemons.start(state, namespace, LABEL, [SSHD, "-D", "-e", "-f", str(config_file(state))],
                        private_mounts=True, run_dirs=RUN_DIRS)
    if wait:
        wait_ready(topology, state)
    return pid


def banner(namespace: str, endpoint: tuple[str, int] = (HOST, SSH_PORT), timeout: float = 0.5) -> bytes:
    """The first line a TCP connection to ``endpoint`` inside ``namespace`` receives (b"" if none)."""
    def read() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            try:
                probe.connect(endpoint)
                data = b""
                while b"\n" not in data and len(data) < 256:
                    chunk = probe.recv(256)
                    if not chunk:
                        break
                    data += chunk
                return data.split(b"\n")[0].rstrip(b"\r")
            except OSError:
                return b""

    return system.in_netns(namespace, read)


def wait_ready(topology: Topology, state: LabState, *, timeout: float = 10.0) -> None:
    """Until sshd in site b greets a connection to 127.0.0.1:22 with an ``SSH-2.0-`` banner."""
    pid = state.pids().get(LABEL)
    daemons.wait_until(lambda: banner(topology.ns(SITE)).startswith(b"SSH-2.0-"), "sshd on site b", state,
                       timeout=timeout, pids=[pid] if pid else [], logs=[f"{LABEL}.out"])


def client_argv(state: LabState, user: str, *command: str, port: int = SSH_PORT, host: str = HOST) -> list[str]:
    """``ssh`` with the lab's client key and known_hosts, no prompts and no user config, to ``user@host:port``."""
    return ["ssh", "-F", "/dev/null", "-i", str(client_key(state)), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known_hosts(state)}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10", "-p", str(port), f"{user}@{host}",
            *command]


def stop(state: LabState) -> None:
    daemons.stop(state, [LABEL])


class SshAccess:
    """What ``Lab`` offers about site b's sshd."""

    state: LabState
    ssh_port = SSH_PORT  # on site b's own 127.0.0.1, public keys only
    ssh_user = users.LAB_USER  # the lab's normal user: ssh_client_key is its key; the default ``user=`` of tests

    @property
    def ssh_client_key(self) -> Path:
        """The private key (0600, owned by ``ssh_user``) that site b's sshd accepts for ``ssh_user``."""
        return client_key(self.state)

    @property
    def known_hosts(self) -> Path:
        """b's sshd host key for 127.0.0.1 (port 22) and [127.0.0.1]:2222: no host key prompt."""
        return known_hosts(self.state)

    def ssh_command(self, *command: str, port: int = SSH_PORT, host: str = HOST, user: str | None = None) -> list[str]:
        """``ssh`` argv to ``user@host:port`` (default ``ssh_user``@127.0.0.1:22) with the lab's client key and
        known_hosts, BatchMode, no ~/.ssh/config; run it in a site (``lab.run("b", lab.ssh_command("true"))``)."""
        return client_argv(self.state, user or self.ssh_user, *command, port=port, host=host)
