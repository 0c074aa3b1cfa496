"""``Lab``: build, use and remove one named lab instance. The CLI (``plexus lab``) and the test fixtures both
drive this class.

    lab = Lab.up("mylab")                      # or Lab("mylab") to attach to a running one
    lab.run("a", ["ping", "-c1", lab.stun_primary[0]])
    with lab.spawn("b", ["plexus", "up", "alice"]) as process: ...
    lab.set_nat("a", "eim-bare"); lab.set_netem(loss_pct=5, delay_ms=20); lab.restart_mail()
    lab.turn_server, lab.turn_password("a"); lab.turn_rest_server, lab.turn_secret()  # TURN relays
    lab.run("b", lab.ssh_command("true"), user=lab.ssh_user)  # sshd on b's 127.0.0.1:22; a normal user
    lab.down()
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from plexus.errors import LabError
from plexus.lab import dht, mail, network, pki, profiles, report, sshd, stun, system, turn, users
from plexus.lab.state import LabState, lab_name
from plexus.lab.topology import (
    MAIL_DOMAIN,
    MAIL_HOST,
    MAIL_HOST_NO_IDLE,
    NAT_KINDS,
    SITE_USERS,
    SITES,
    SOURCE_ROOT,
    STUN_ALTERNATE,
    STUN_PRIMARY,
    TURN_REALM,
    TURN_REST_SERVER,
    TURN_SERVER,
    NatKind,
    Topology,
    host_address,
    nat_outside_address,
)

DAEMON_LABELS = ("turnserver", "turn", "turn-rest", "dovecot", "smtpd", "sshd")
Site = str  # "a", "b", "c" or "srv"


class Lab(sshd.SshAccess):
    """One lab instance, named (``PLEXUS_LAB_NAME`` or ``plexus``); its namespaces are ``<name>-<site>``.
    sshd on b: ``ssh_port``, ``ssh_user``, ``ssh_client_key``, ``known_hosts``, ``ssh_command`` (sshd.SshAccess)."""

    stun_primary = STUN_PRIMARY
    stun_alternate = STUN_ALTERNATE
    mail_host = MAIL_HOST
    mail_host_no_idle = MAIL_HOST_NO_IDLE
    mail_domain = MAIL_DOMAIN
    turn_server = TURN_SERVER  # long-term credentials: user = the site user, password turn_password(site)
    turn_rest_server = TURN_REST_SERVER  # TURN REST: credentials from turn_secret() (turn.rest_credentials)
    turn_realm = TURN_REALM
    sites = SITES

    def __init__(self, name: str | None = None) -> None:
        self.name = lab_name(name)
        self.state = LabState(self.name)
        self._config: dict[str, Any] | None = None

    # lifecycle ------------------------------------------------------------------------------------------
    @classmethod
    def up(cls, name: str | None = None, *, nat: Mapping[str, NatKind] | None = None, path_length: int = 3,
           loss_pct: float = 0.0, delay_ms: float = 0.0, force: bool = False) -> Lab:
        """Build the lab and start its servers. An existing complete lab is kept (``force`` rebuilds it); a
        half-built one is removed first. Any failure removes what was built and raises LabError."""
        system.check_host()
        lab = cls(name)
        if lab.is_up() and not force:
            return lab
        if lab.state.exists() or force:
            lab.down()
        try:
            topology = Topology(lab.name, path_length, {**Topology(lab.name).nat, **(nat or {})})
        except ValueError as error:
            raise LabError(str(error)) from error
        lab._config = {"name": lab.name, "path_length": path_length, "nat": dict(topology.nat),
                       "netem": {"loss_pct": loss_pct, "delay_ms": delay_ms}, "complete": False}
        try:
            lab.state.create()
            lab.state.save_config(lab._config)
            passwords = {user: lab.state.make_password(user) for user in SITE_USERS.values()}
            lab.state.make_password("psk")  # PLEXUS_LAB_PSK: the shared key of psk profile variants
            turn.write_config(lab.state)
            with ThreadPoolExecutor(1) as pool:  # key generation overlaps with building the network
                made = pool.submit(pki.make_pki, lab.state.pki, lab=lab.name, users=list(passwords),
                                   domain=MAIL_DOMAIN, server_name=f"mail.{MAIL_DOMAIN}",
                                   server_ips=[MAIL_HOST, MAIL_HOST_NO_IDLE])
                network.build(topology, lab.state)
                made.result()
            profiles.write_site_profiles(topology, lab.state)
            mail.write_config(topology, lab.state, passwords)
            sshd.write_config(topology, lab.state, users.ensure_lab_user())
            stun.start(topology, lab.state, wait=False)
            turn.start(topology, lab.state, wait=False)
            sshd.start(topology, lab.state, wait=False)
            mail.start(topology, lab.state)
            stun.wait_ready(topology, lab.state)
            turn.wait_ready(topology, lab.state)
            sshd.wait_ready(topology, lab.state)
            lab._config["dht"] = dht.set_up(lab)
            if loss_pct or delay_ms:
                network.set_netem(topology, lab.state, loss_pct, delay_ms)
        except BaseException:
            lab.down()
            raise
        lab._config["complete"] = True
        lab.state.save_config(lab._config)
        return lab

    def down(self) -> None:
        """Stop every process of the lab (recorded PIDs, then anything left in its namespaces), delete the
        namespaces and the state directory. Works on half-built labs; a lab that is not there is fine."""
        pids = list(self.state.pids().values())
        system.stop_pids(system.with_descendants(pids), grace=0.3)
        network.destroy(self.state)
        self.state.remove()
        self._config = None

    def is_up(self) -> bool:
        """True when this lab was completely built, all its namespaces exist and its servers run."""
        if not self.is_built():
            return False
        running = self.state.pids()
        return all(label in running for label in DAEMON_LABELS)

    def is_built(self) -> bool:
        """True when the network is there (its servers may be stopped, e.g. the mail server for a DHT test)."""
        if not self.state.config_file.exists() or not self.config.get("complete"):
            return False
        return len(network.existing_namespaces(self.namespaces())) == len(self.namespaces())

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = self.state.load_config()
        return self._config

    @property
    def topology(self) -> Topology:
        config = self.config
        return Topology(self.name, int(config["path_length"]), dict(config["nat"]))

    def namespaces(self) -> list[str]:
        return self.topology.namespaces()

    def status(self) -> dict[str, Any]:
        return report.status(self)  # namespaces, daemons (PID, alive), NAT kinds, netem, addresses, sshd...

    # addresses, users, files ----------------------------------------------------------------------------
    def ns(self, site: Site) -> str:
        """The namespace of a site host (a, b, c) or of srv / inet."""
        if site not in (*SITES, "srv", "inet"):
            raise LabError(f"unknown lab site {site!r}", hint="one of a, b, c, srv")
        return self.topology.ns(site)

    def nat_ns(self, site: Site) -> str:
        """The site's NAT namespace (its home NAT when the kind is ``double``)."""
        return self.topology.nat_ns(site)

    def nat_namespaces(self, site: Site) -> list[str]:
        """The site's NAT namespaces, outermost first (two for kind ``double``: carrier-grade, then home)."""
        return self.topology.nat_namespaces(site)

    @staticmethod
    def user(site: Site) -> str:
        return SITE_USERS[site]

    @staticmethod
    def host_address(site: Site) -> str:
        return host_address(site)

    def public_address(self, site: Site) -> str:
        """Where the site appears from outside: its (outermost) NAT's wan address, or its own with NAT kind
        none."""
        return host_address(site) if self.nat(site) == "none" else nat_outside_address(site)

    @staticmethod
    def nat_outside_address(site: Site) -> str:
        """The wan address of the site's outermost NAT (the carrier-grade one for kind ``double``)."""
        return nat_outside_address(site)

    def profile_dir(self, site: Site) -> Path:
        return self.state.sites / site

    def state_dir(self, site: Site) -> Path:
        """The site's plexus state folder (its replay memory), as on a machine of its own."""
        return self.state.dir / "state" / site

    def password(self, user: str) -> str:
        """Mailbox password of ``user`` (alice/bob/carol) or of a site's user (a/b/c)."""
        return self.state.password(SITE_USERS.get(user, user))

    def turn_password(self, user: str) -> str:
        """Long-term TURN password of ``user`` (alice/bob/carol) or of a site's user (a/b/c) on ``turn_server``."""
        return self.state.password(turn.password_name(user))

    def turn_secret(self) -> str:
        """The TURN REST shared secret of ``turn_rest_server`` (coturn's static-auth-secret)."""
        return self.state.password(turn.SECRET_NAME)

    @property
    def ca(self) -> Path:
        return self.state.pki / "ca.crt"

    def certificate(self, user: str) -> Path:
        return self.state.pki / f"{SITE_USERS.get(user, user)}.crt"

    def key(self, user: str) -> Path:
        return self.state.pki / f"{SITE_USERS.get(user, user)}.key"

    def user_home(self, site: Site, user: str = users.LAB_USER) -> Path:
        """HOME of ``user`` in ``site`` for ``run``/``spawn``/``lab exec`` with a user (0700, owned by it)."""
        return users.site_dirs(self.state, user, site)[0]

    def user_state_dir(self, site: Site, user: str = users.LAB_USER) -> Path:
        """PLEXUS_STATE_DIR of ``user`` in ``site`` (0700, owned by it)."""
        return users.site_dirs(self.state, user, site)[1]

    def write_profile(self, site: Site, name: str, *, role: str | None = None,
                      peers: Sequence[str] | None = None, authentication: str = "smime",
                      template: str = "openvpn", directory: Path | None = None,
                      relay_auth: profiles.RelayAuth = "password", **overrides: Any) -> Path:
        """Write a profile variant ``<name>.yaml`` into the site's profile dir (or ``directory``). Defaults:
        the site's lab profile; ``overrides`` are top-level keys merged into it (nested dicts merge, None
        deletes), e.g. ``punch={"hops": 5}`` or ``rendezvous={"email": {"imap": {"idle": False}}}``;
        ``relay_auth="rest"`` names the TURN REST server with PLEXUS_TURN_SECRET instead of the long-term one."""
        __, default_role, default_peers = profiles.SITE_PROFILES[site]
        document = profiles.build_profile(self.topology, self.state, site, role=role or default_role,
                                          peers=tuple(peers or default_peers), authentication=authentication,
                                          template=template, relay_auth=relay_auth, overrides=overrides)
        path = (directory or self.profile_dir(site)) / f"{name}.yaml"
        return profiles.dump(document, path, f"lab {self.name!r} site {site}: variant written by a test",
                             double_nat=self.topology.double(site))

    # running things in a site ---------------------------------------------------------------------------
    def env(self, site: Site, extra: Mapping[str, str] | None = None, *, user: str | None = None) -> dict[str, str]:
        """The environment of a site: PLEXUS_PROFILE_PATH, PLEXUS_MAIL_PASSWORD, PLEXUS_LAB_LOGIN (the site's
        mailbox), PLEXUS_LAB_CA, PLEXUS_LAB_NAME, PLEXUS_LAB_PSK (one key shared by all sites, for psk
        profile variants), PLEXUS_TURN_PASSWORD (the site user's on ``turn_server``), PLEXUS_TURN_SECRET (the
        REST secret of ``turn_rest_server``), PLEXUS_STATE_DIR (the site's own state folder), and PYTHONPATH
        reaching this plexus. With ``user``: its own HOME and PLEXUS_STATE_DIR (made now), USER, LOGNAME, and
        a PATH starting with this interpreter's folder (users.user_env)."""
        env = dict(os.environ)
        # a checkout that is not pip-installed still imports in the site (python3 -m plexus ...)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
        env.update({"PLEXUS_LAB_CA": str(self.ca), "PLEXUS_LAB_NAME": self.name,
                    "PLEXUS_LAB_PSK": self.state.password("psk"), "PLEXUS_TURN_SECRET": self.turn_secret()})
        if site in SITES:
            env.update({"PLEXUS_PROFILE_PATH": str(self.profile_dir(site)), "PLEXUS_LAB_LOGIN": self.user(site),
                        "PLEXUS_MAIL_PASSWORD": self.password(site), "PLEXUS_TURN_PASSWORD": self.turn_password(site),
                        "PLEXUS_STATE_DIR": str(self.state_dir(site))})
        if user is not None:
            entry = users.lookup(user)
            env = users.user_env(env, entry, *users.make_site_dirs(self.state, entry, site))
        env.update(extra or {})
        return env

    def command(self, site: Site, argv: Sequence[str], *, user: str | None = None) -> list[str]:
        """``argv`` in the site's namespace; with ``user``, as that user without capabilities (users.py), after
        checking it can reach this Python and plexus (a one-line LabError if not)."""
        switch = [] if user is None else users.switch_argv(users.checked(user))
        return ["ip", "netns", "exec", self.ns(site), *switch, *argv]

    def invocation(self, site: Site, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                   user: str | None = None) -> tuple[list[str], dict[str, str], str | None]:
        """(command, environment, working folder) of ``argv`` in ``site`` (as ``user``: in its HOME unless it
        can enter the current folder)."""
        command, environment = self.command(site, argv, user=user), self.env(site, env, user=user)
        cwd = None if user is None else users.working_dir(users.lookup(user), self.user_home(site, user))
        return command, environment, cwd

    def run(self, site: Site, argv: Sequence[str], *, timeout: float = 30.0, input: str | None = None,
            env: Mapping[str, str] | None = None, check: bool = False,
            user: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the site's namespace with its environment (as ``user``, e.g. ``lab.ssh_user``: a
        normal user without capabilities); output captured as text."""
        command, environment, cwd = self.invocation(site, argv, env=env, user=user)
        return subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout,
                              env=environment, cwd=cwd, check=check)

    def spawn(self, site: Site, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              stdout: int | IO[Any] | None = subprocess.PIPE, stderr: int | IO[Any] | None = subprocess.STDOUT,
              stdin: int | IO[Any] | None = subprocess.DEVNULL, text: bool = True,
              user: str | None = None) -> subprocess.Popen[Any]:
        """Start ``argv`` in the background in the site's namespace (as ``user``: see ``run``); its PID is
        recorded so ``lab down`` stops it. Stop it yourself with ``lab.stop(process)``."""
        command, environment, cwd = self.invocation(site, argv, env=env, user=user)
        process = subprocess.Popen(command, env=environment, cwd=cwd, stdout=stdout, stderr=stderr, stdin=stdin,
                                   text=text, start_new_session=True)
        self.state.record_pid(f"spawn-{process.pid}", process.pid)
        return process

    def stop(self, process: subprocess.Popen[Any] | int, *, grace: float = 2.0) -> None:
        """Stop a spawned process and its children by PID (SIGTERM, then SIGKILL after ``grace``)."""
        pid = process if isinstance(process, int) else process.pid
        system.stop_pids(system.with_descendants([pid]), grace=grace)
        if not isinstance(process, int):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        self.state.forget_pid(f"spawn-{pid}")

    def socket(self, site: Site, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket living in the site's namespace, usable from this process (e.g. asyncio ``sock=``)."""
        return system.netns_socket(self.ns(site), family, kind)

    # runtime changes ------------------------------------------------------------------------------------
    def nat(self, site: Site) -> NatKind:
        kind: NatKind = self.config["nat"][site]
        return kind

    def set_nat(self, site: Site, kind: NatKind) -> None:
        """Switch a site's NAT kind now (rules replaced, its conntrack table flushed; to or from ``double`` its
        carrier-grade NAT namespace is added or removed, and the site's lab and DHT profiles get the new
        ``punch.hops``; variants a test wrote before keep theirs)."""
        if site not in SITES or kind not in NAT_KINDS:
            raise LabError(f"bad NAT setting {site}={kind}", hint=f"kinds: {', '.join(NAT_KINDS)}")
        old = self.topology
        new = network.set_nat(old, site, kind, self.state)
        self.config["nat"][site] = kind
        self.state.save_config(self.config)
        if new.punch_hops(site) != old.punch_hops(site):  # the site's own profiles follow its NATs
            profiles.write_site_profiles(new, self.state, (site,))
            if self.config.get("dht") and site in dht.SITE_PROFILES:
                self.write_profile(site, dht.SITE_PROFILES[site], **dht.dht_profile_overrides())

    def set_netem(self, loss_pct: float = 0.0, delay_ms: float = 0.0) -> None:
        """Loss (percent) and delay (ms, per direction) on every NAT's outside link; 0, 0 removes them."""
        network.set_netem(self.topology, self.state, loss_pct, delay_ms)
        self.config["netem"] = {"loss_pct": loss_pct, "delay_ms": delay_ms}
        self.state.save_config(self.config)

    def restart_mail(self, *, down_for: float = 0.0) -> None:
        """Stop dovecot and OpenSMTPD (clients see their connections drop), wait ``down_for`` seconds, and
        start them again on the same mailboxes."""
        mail.stop(self.state)
        time.sleep(down_for)
        mail.start(self.topology, self.state)
