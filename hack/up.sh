#!/usr/bin/env bash
# Starts auraed on a fresh machine with a working default setup: builds
# auraed and aer, installs them to /usr/local/bin, creates the PKI and the
# client config when absent (never overwriting), and runs the daemon in the
# foreground on /var/run/aurae/aurae.sock. In another shell (same user):
#   aer status
#   aer run -- echo hi
# With --install-unit it installs hack/systemd/auraed.service instead of
# running in the foreground, and starts it with systemctl.
# Cells are networked by CNI: the plugins come from Debian's
# containernetworking-plugins, and --bootstrap writes the default network
# (bridge aurae0, 10.91.0.0/16) to /etc/cni/net.d when none is configured.
set -euo pipefail
cd "$(dirname "$0")/.."

install_unit=false
args=()
for a in "$@"; do
  case "$a" in
    --install-unit) install_unit=true ;;
    *) args+=("$a") ;;
  esac
done

if [ "$(id -u)" != 0 ]; then
  echo "hack/up.sh: run as root (auraed owns the node: cgroups, namespaces, /var/run/aurae)" >&2
  exit 1
fi
missing=()
for pkg in libseccomp-dev pkg-config containernetworking-plugins iptables; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
profile=${AURAE_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release -p auraed -p aer
else
  cargo build -p auraed -p aer
fi
install -m 0755 "target/$profile/auraed" "target/$profile/aer" /usr/local/bin/
if $install_unit; then
  install -m 0644 hack/systemd/auraed.service /etc/systemd/system/auraed.service
  systemctl daemon-reload
  systemctl enable --now auraed.service
  echo "auraed.service installed and started: systemctl status auraed; journalctl -u auraed"
  exit 0
fi
exec /usr/local/bin/auraed --bootstrap ${args[@]+"${args[@]}"}
