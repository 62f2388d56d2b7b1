#!/usr/bin/env bash
# Installs what Switchboard needs on a fresh Debian machine: the system libraries it links
# (zlib, SQLite, OpenSSL) and the peers the interop tests talk to (Node `ws`, Python
# `websockets`, the openssl CLI for test certificates, nginx). Idempotent: installs only what is
# missing, so a second run costs a few dpkg queries and one python3 import.
set -euo pipefail

# Debian packages. nodejs: any installed nodejs (Debian's 18 or a repack of 20) satisfies
# node-ws, so an existing one is kept. node-ws puts `ws` under /usr/share/nodejs, which the
# peers find with NODE_PATH=/usr/share/nodejs.
apt_packages=(pkg-config zlib1g-dev libsqlite3-dev libssl-dev openssl nodejs node-ws)
# Tests/BrowserTests drive a headless Chromium; a font, so its screenshots show text.
apt_packages+=(chromium fonts-dejavu-core)
# nginx: Tests/SwitchboardTests/DeployFilesTests runs deploy/nginx.conf in front of a broker
# (as the test's own process on a loopback port; the package's service is not needed).
apt_packages+=(nginx)
# redis-server: Tests/SwitchboardTests' cluster and RedisWire tests start their own on a loopback port.
apt_packages+=(redis-server)
# systemd: DeployFilesTests runs `systemd-analyze verify` on deploy/switchboard.service (nothing is started).
apt_packages+=(systemd)

# Python `websockets` for Tests/Peers/python-peer.py, into the interpreter `python3` runs
# (a pyenv shim here), hence `python3 -m pip`.
websockets_version="15.0.1"
have_ws=$(python3 -c 'import websockets; print(websockets.__version__)' 2>/dev/null || true)
# A stock Debian may lack python3 or its pip; a python3 that has pip (a pyenv one, say) is used as is.
if [ "$have_ws" != "$websockets_version" ] && ! python3 -m pip --version >/dev/null 2>&1; then
  apt_packages+=(python3 python3-pip)
fi

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  for p in "${missing[@]}"; do echo "setup: installing apt package $p"; done
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ "$have_ws" != "$websockets_version" ]; then
  echo "setup: installing python websockets==$websockets_version (had: ${have_ws:-none})"
  pip_install=(python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
  # Debian's own python3 refuses pip installs (PEP 668) unless told otherwise.
  "${pip_install[@]}" "websockets==$websockets_version" 2>/dev/null ||
    "${pip_install[@]}" --break-system-packages "websockets==$websockets_version"
fi
