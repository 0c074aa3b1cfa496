#!/usr/bin/env bash
# Install what plexus and its network lab need on Debian 12, then plexus itself.
#   sudo bash scripts/install-debian.sh          # plexus + the lab's Debian packages
#   sudo bash scripts/install-debian.sh --dev    # ... and the test tools (editable install)
# The lab's daemons (coturn, dovecot, OpenSMTPD) are only ever started by `plexus lab up`, with private
# configs; policy-rc.d keeps Debian from starting the system services at install time.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; [ "${1:-}" = "--dev" ] && dev=1
[ "$(id -u)" = 0 ] || { echo "install-debian.sh: run as root (sudo)" >&2; exit 1; }

packages=(
  iproute2 iptables conntrack iputils-ping            # the lab's namespaces, NATs, ping across tunnels
  coturn                                              # RFC 5780 STUN server
  dovecot-imapd dovecot-lmtpd dovecot-submissiond opensmtpd   # the lab's mail server
  openvpn wireguard-tools wireguard-go socat          # payloads
  iperf3 openssh-server openssh-client curl           # clients and servers through the tunnels (tests, benchmarks)
  systemd                                             # systemd-analyze verify of the packaged unit
  openssl ca-certificates python3 python3-pip python3-venv
)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then     # do not start the system daemons of the lab's servers
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

pip_flags=(--quiet --disable-pip-version-check --root-user-action=ignore)
python3 -m pip help install 2>/dev/null | grep -q -- --break-system-packages && pip_flags+=(--break-system-packages)
if [ $dev = 1 ]; then
  python3 -m pip install "${pip_flags[@]}" -e ".[dev,dht]"
else
  python3 -m pip install "${pip_flags[@]}" ".[dht]"
fi
echo "plexus installed: $(command -v plexus) ($(plexus --version))"
