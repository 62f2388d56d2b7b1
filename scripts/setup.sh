#!/usr/bin/env bash
# Installs what Switchboard needs on a fresh Debian machine: the system libraries it links
# (zlib, SQLite, OpenSSL) and the peers the interop tests talk to. Idempotent: installs
# only what is missing, so a second run costs a few dpkg queries.
set -euo pipefail

apt_packages=(pkg-config zlib1g-dev libsqlite3-dev libssl-dev)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
