"""The lab's mail server in ``srv``: dovecot (IMAPS with IDLE, submission 465/587 with AUTH, LMTP) and OpenSMTPD
relaying on srv's loopback only.

Path of a mail: client --TLS + AUTH--> dovecot submission (198.18.0.25:465/587) --SMTP--> OpenSMTPD
127.0.0.1:25 --LMTP 127.0.0.1:24--> dovecot lmtp --> Maildir --> IMAP IDLE. OpenSMTPD 6.8 on Debian 12 cannot
do TLS with OpenSSL 3, and dovecot submission only relays, hence the two daemons. 198.18.0.26 is the same
server with an IMAP CAPABILITY that lacks IDLE, for clients that must poll.
"""

from __future__ import annotations

import os
import shutil

from plexus.lab import daemons
from plexus.lab.state import LabState
from plexus.lab.topology import (
    HUB_ADDRESS,
    IMAPS_PORT,
    MAIL_DOMAIN,
    MAIL_HOST,
    MAIL_HOST_NO_IDLE,
    MAIL_NAME,
    SITES,
    SMTPS_PORT,
    STUN_ALTERNATE,
    STUN_PRIMARY,
    SUBMISSION_PORT,
    Topology,
    host_address,
    nat_outside_address,
)

DAEMONS = ("dovecot", "smtpd")
NO_IDLE_CAPABILITY = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES "
                      "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
                      "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
                      "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
                      "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE")

_DOVECOT_CONF = """\
# dovecot for plexus lab {name}: private paths only (nothing under /etc/dovecot or /run/dovecot is used)
base_dir = {state}/dovecot
state_dir = {mail}/state
instance_name = plexus-lab-{name}
log_path = {logs}/dovecot.log
protocols = imap lmtp submission
hostname = {mail_name}
listen = {mail_host}, {mail_host_no_idle}
ssl = required
ssl_cert = <{pki}/mail.crt
ssl_key = <{pki}/mail.key
disable_plaintext_auth = yes
auth_mechanisms = plain login
# answer a wrong password at once (default: 2 s, growing per failure from one address) so tests stay fast
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {mail}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={mail}/home/%n
}}
first_valid_uid = 100
mail_location = maildir:~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {imaps}
  }}
}}
# dovecot submission cannot deliver; it relays to OpenSMTPD on srv's loopback, which hands mail to LMTP
submission_relay_host = 127.0.0.1
submission_relay_port = 25
submission_relay_trusted = yes
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
  inet_listener submissions {{
    port = {smtps}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = 24
  }}
}}
protocol lmtp {{
  # strip @domain: bob@plexus.test and bob are one user
  auth_username_format = %n
}}
local {mail_host_no_idle} {{
  protocol imap {{
    imap_capability = {no_idle}
  }}
}}
"""

_SMTPD_CONF = """\
# OpenSMTPD for plexus lab {name}: plain SMTP on srv's loopback only, delivering by LMTP to dovecot
table vusers file:{mail}/smtpd-virtual
table ubase file:{mail}/smtpd-userbase
listen on 127.0.0.1 port 25 hostname {mail_name}
action "local" lmtp "127.0.0.1:24" rcpt-to virtual <vusers> userbase <ubase>
match from local for domain "{domain}" action "local"
"""


def write_config(topology: Topology, state: LabState, passwords: dict[str, str]) -> None:
    """Write dovecot's and OpenSMTPD's configs, users, fresh mailboxes and the private resolv.conf/hosts."""
    mail = state.mail
    shutil.rmtree(mail / "home", ignore_errors=True)
    for path in (mail / "home", mail / "state"):
        path.mkdir(parents=True, exist_ok=True)
    os.chown(mail / "home", 65534, 65534)  # nobody:nogroup, the mail user of the static userdb
    values = {"name": topology.name, "state": state.dir, "mail": mail, "logs": state.logs, "pki": state.pki,
              "mail_name": MAIL_NAME, "mail_host": MAIL_HOST, "mail_host_no_idle": MAIL_HOST_NO_IDLE,
              "imaps": IMAPS_PORT, "smtps": SMTPS_PORT, "submission": SUBMISSION_PORT,
              "no_idle": NO_IDLE_CAPABILITY, "domain": MAIL_DOMAIN}
    (mail / "dovecot.conf").write_text(_DOVECOT_CONF.format(**values))
    smtpd_conf = mail / "smtpd.conf"
    smtpd_conf.write_text(_SMTPD_CONF.format(**values))
    smtpd_conf.chmod(0o600)  # OpenSMTPD refuses a config others can write
    users = mail / "users"
    users.write_text("".join(f"{user}:{{PLAIN}}{password}\n" for user, password in passwords.items()))
    users.chmod(0o640)
    shutil.chown(users, group="dovecot")  # read by dovecot's auth process, not by others
    (mail / "smtpd-virtual").write_text("".join(f"{user}@{MAIL_DOMAIN} vmail\n" for user in passwords))
    (mail / "smtpd-userbase").write_text(f"vmail 65534:65534:{mail}/home\n")
    (state.etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    hosts = ["127.0.0.1 localhost", f"{MAIL_HOST} {MAIL_NAME}", f"{MAIL_HOST_NO_IDLE} mail-noidle.{MAIL_DOMAIN}",
             f"{STUN_PRIMARY[0]} stun.{MAIL_DOMAIN}", f"{STUN_ALTERNATE[0]} stun2.{MAIL_DOMAIN}",
             f"{HUB_ADDRESS} inet.{MAIL_DOMAIN}"]
    for site in SITES:
        hosts += [f"{host_address(site)} {site}.{MAIL_DOMAIN}", f"{nat_outside_address(site)} nat{site}.{MAIL_DOMAIN}"]
    (state.etc / "hosts").write_text("\n".join(hosts) + "\n")


def start(topology: Topology, state: LabState, *, timeout: float = 10.0) -> None:
    """Start dovecot and OpenSMTPD in srv and wait until IMAPS, submission and the relay accept connections."""
    srv = topology.ns("srv")
    dovecot = daemons.start(state, srv, "dovecot", ["dovecot", "-F", "-c", str(state.mail / "dovecot.conf")],
                            private_mounts=True)
    smtpd = daemons.start(state, srv, "smtpd", ["smtpd", "-d", "-f", str(state.mail / "smtpd.conf")],
                          private_mounts=True)
    endpoints = [(MAIL_HOST, IMAPS_PORT), (MAIL_HOST, SMTPS_PORT), (MAIL_HOST, SUBMISSION_PORT),
                 (MAIL_HOST_NO_IDLE, IMAPS_PORT), ("127.0.0.1", 25), ("127.0.0.1", 24)]
    daemons.wait_until(lambda: daemons.tcp_ready(srv, endpoints), "mail server (dovecot + OpenSMTPD)", state,
                       timeout=timeout, pids=[dovecot, smtpd],
                       logs=["dovecot.out", "dovecot.log", "smtpd.out"])


def stop(state: LabState) -> None:
    daemons.stop(state, DAEMONS)
