#!/usr/bin/env bash
# What the tests need beyond the venv: Debian's Chromium for the browser tests, Java for
# the official Firestore emulator and systemd's tools for the unit-file tests. Installs only
# what is missing; needs root (or sudo) then.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v java >/dev/null || missing+=(default-jre-headless)
# systemd-analyze verifies the units; systemd-sysusers and systemctl --root install them.
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} for the tests" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
