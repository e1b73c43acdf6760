#!/usr/bin/env bash
# Installs the Debian packages the test suite drives, which scripts/test-packages.txt lists
# (and nothing else names). Idempotent: does nothing when every package is already present,
# and runs apt-get update only when one is missing. Needs root (or sudo) on Debian.
# One of them is also a runtime need: redis-server, for `salon serve --workers N` without a
# [cluster] section (docs/cluster.md); a server that runs it installs just that package.
#
#   scripts/install-deps.sh             install the missing packages
#   scripts/install-deps.sh --list      print the list's packages, one a line
#   scripts/install-deps.sh --missing   print the ones not installed; exit 1 if there are any
#
# A second argument reads another list instead (the tests use it).
set -euo pipefail
mode="${1:-install}"
list="${2:-$(dirname "${BASH_SOURCE[0]}")/test-packages.txt}"
case "$mode" in
    install | --list | --missing) ;;
    *)
        echo "usage: $0 [--list | --missing] [LIST]" >&2
        exit 2
        ;;
esac

packages=()
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line="${line%%#*}"
    read -r -a words <<<"$line"
    [ ${#words[@]} -eq 0 ] && continue
    if [ ${#words[@]} -ne 1 ] || ! [[ ${words[0]} =~ ^[a-z0-9][a-z0-9+.-]+$ ]]; then
        echo "$list:$lineno: not one Debian package name: $line" >&2
        exit 2
    fi
    packages+=("${words[0]}")
done <"$list"

if [ "$mode" = --list ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

if ! command -v dpkg-query >/dev/null; then
    echo "install-deps.sh: no dpkg-query here; the packages in $list are Debian's" >&2
    exit 2
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$mode" = --missing ]; then
    [ ${#missing[@]} -eq 0 ] && exit 0
    printf '%s\n' "${missing[@]}"
    exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
