#!/usr/bin/env bash
# Installs what chai needs to build and test on Debian (12 or newer). Run as root.
set -euo pipefail
packages=(cmake ninja-build g++ libabsl-dev libgtest-dev libopenmpi-dev openmpi-bin libsentencepiece-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "dependencies ready"
