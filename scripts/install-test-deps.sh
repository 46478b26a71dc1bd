#!/usr/bin/env bash
# What the tests need beyond the venv: Debian's Chromium for the browser tests, Java for
# the official Firestore emulator, systemd's tools for the unit-file tests, and systemd-nspawn
# and mmdebstrap to boot the service under a real systemd (tests/test_systemd_real.py).
# Installs only what is missing; needs root (or sudo) then.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v java >/dev/null || missing+=(default-jre-headless)
# systemd-analyze verifies the units; systemd-sysusers and systemctl --root install them.
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
# The official Firestore emulator comes with the image's Google Cloud CLI and cannot be
# installed from the registries; where it is missing the tests fall back to an npm emulator
# (see tests/firestore_emulator.py), which needs npm.
FIRESTORE_JAR=/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar
NPM_EMULATOR_DIR="$(cd "$(dirname "$0")/.." && pwd)/.cache/firestore-emulator"
need_npm_emulator=false
if [ ! -f "$FIRESTORE_JAR" ] && [ ! -d "$NPM_EMULATOR_DIR/node_modules/@firestore-emulator/server" ]; then
  need_npm_emulator=true
  command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} for the tests" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if $need_npm_emulator; then
  echo "no official Firestore emulator: installing the npm one into $NPM_EMULATOR_DIR" >&2
  mkdir -p "$NPM_EMULATOR_DIR"
  npm install --prefix "$NPM_EMULATOR_DIR" --silent --no-audit --no-fund \
    @firestore-emulator/server@0.3.15 @grpc/grpc-js@1.14.3 >/dev/null
fi
