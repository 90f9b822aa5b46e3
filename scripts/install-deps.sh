#!/usr/bin/env bash
# Installs the Debian 12 packages Carewire needs to build, run and test, and
# only those that are missing, so a second run does nothing and needs no network.
set -euo pipefail

packages=(
  g++ cmake ninja-build ccache pkg-config make git
  libboost1.81-dev libboost-json1.81-dev libboost-system1.81-dev libboost-container1.81-dev
  libssl-dev openssl
  libsqlite3-dev sqlite3
  libsodium-dev liboath-dev libqrencode-dev libzxcvbn-dev libmagic-dev
  libtomlplusplus-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  curl ca-certificates
  python3 python3-pyotp
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then
    sudo="sudo"
  else
    echo "install these packages as root: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
