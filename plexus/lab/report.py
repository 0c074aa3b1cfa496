"""``Lab.status()``: what a lab has running (``plexus lab status`` prints it, ``--json`` as is)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plexus.lab import network, sshd, turn
from plexus.lab.topology import (
    MAIL_DOMAIN,
    MAIL_HOST,
    MAIL_HOST_NO_IDLE,
    SITE_USERS,
    SITES,
    STUN_ALTERNATE,
    STUN_PRIMARY,
    TURN_REALM,
    TURN_REST_SERVER,
    TURN_SERVER,
    host_address,
)

if TYPE_CHECKING:
    from plexus.lab.lab import Lab


def status(lab: Lab) -> dict[str, Any]:
    """Namespaces, daemons (PID, alive), NAT kinds, netem, addresses, sshd on b, profile dirs."""
    if not lab.state.exists():
        return {"name": lab.name, "up": False}
    config = lab.config
    recorded = lab.state.recorded()
    return {
        "name": lab.name,
        "up": lab.is_up(),
        "state_dir": str(lab.state.dir),
        "path_length": config["path_length"],
        "nat": config["nat"],
        "netem": config["netem"],
        "namespaces": network.existing_namespaces(lab.namespaces()),
        "daemons": {label: {"pid": pid, "alive": running}
                    for label, (pid, running) in sorted(recorded.items()) if not label.startswith("spawn-")},
        "processes": len([label for label, (_, running) in recorded.items()
                          if running and label.startswith("spawn-")]),
        "stun": [f"{STUN_PRIMARY[0]}:{STUN_PRIMARY[1]}", f"{STUN_ALTERNATE[0]}:{STUN_ALTERNATE[1]}"],
        "turn": {"long_term": f"{TURN_SERVER[0]}:{TURN_SERVER[1]}",
                 "rest": f"{TURN_REST_SERVER[0]}:{TURN_REST_SERVER[1]}", "realm": TURN_REALM,
                 "allocations": turn.allocations(lab.state)},
        "mail": {"host": MAIL_HOST, "no_idle_host": MAIL_HOST_NO_IDLE, "imaps": 993, "smtps": 465,
                 "submission": 587, "domain": MAIL_DOMAIN},
        "ssh": {"site": sshd.SITE, "listen": f"{sshd.HOST}:{sshd.SSH_PORT}", "user": lab.ssh_user,
                "client_key": str(lab.ssh_client_key), "known_hosts": str(lab.known_hosts)},
        "sites": {site: {"user": SITE_USERS[site], "host": host_address(site),
                         "public": lab.public_address(site), "nat": config["nat"][site],
                         "profiles": str(lab.profile_dir(site))} for site in SITES},
    }
