#!/usr/bin/env bash
# Installs the Debian packages the test suite drives (real IRC clients, and Chromium for
# the browser tests). Idempotent: does nothing when every package is already present.
# Needs root (or sudo) on Debian.
set -euo pipefail
packages=(irssi weechat-headless tmux openssl chromium)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
