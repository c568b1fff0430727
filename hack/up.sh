#!/usr/bin/env bash
# Starts auraed on a fresh machine with a working default setup: builds
# auraed and aer, installs them to /usr/local/bin, creates the PKI and the
# client config when absent (never overwriting), and runs the daemon in the
# foreground on /var/run/aurae/aurae.sock. In another shell (same user):
#   aer status
#   aer run -- echo hi
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "hack/up.sh: run as root (auraed owns the node: cgroups, namespaces, /var/run/aurae)" >&2
  exit 1
fi
if ! dpkg -s libseccomp-dev >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libseccomp-dev pkg-config >/dev/null
fi
profile=${AURAE_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release -p auraed -p aer
else
  cargo build -p auraed -p aer
fi
install -m 0755 "target/$profile/auraed" "target/$profile/aer" /usr/local/bin/
exec /usr/local/bin/auraed --bootstrap "$@"
