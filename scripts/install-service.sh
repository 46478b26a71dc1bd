#!/usr/bin/env bash
# Install entityflow as a systemd service, or remove it (--uninstall). Safe to run again: an
# upgrade is the same command. With --root DIR (or DESTDIR) everything lands under DIR and
# no running systemd is touched, which is how CI exercises it. docs/operations.md has more.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/install-service.sh [--root DIR] [--source SPEC] [--pip-args ARGS] [--python PY]
                                  [--constraints FILE] [--socket] [--now] [--uninstall [--purge]]
  --root DIR      install under DIR instead of / (also DESTDIR=DIR); systemctl runs offline
  --source SPEC   what pip installs into the venv [this checkout]
  --pip-args ARGS extra pip arguments, e.g. "--no-deps" [none]
  --python PY     the interpreter the venv is made from [python3]
  --constraints FILE  the pinned versions pip installs ("" for none) [this checkout's constraints.txt]
  --socket        also enable entityflow.socket (socket activation)
  --now           start (or restart) the service once installed; on a live system only
  --uninstall     disable and remove the units and the venv; keeps settings and data
  --purge         with --uninstall: also remove settings, data, logs and the user
USAGE
}

here="$(cd "$(dirname "$0")/.." && pwd)"
root="${DESTDIR:-/}"
source_spec="$here"
pip_args=""
python="python3"
constraints="$here/constraints.txt"
socket=0
now=0
uninstall=0
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) root="${1#--root=}"; shift ;;
    --source) source_spec="${2:?--source needs a value}"; shift 2 ;;
    --pip-args) pip_args="${2?--pip-args needs a value}"; shift 2 ;;
    --python) python="${2:?--python needs a value}"; shift 2 ;;
    --constraints) constraints="${2?--constraints needs a value}"; shift 2 ;;
    --socket) socket=1; shift ;;
    --now) now=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install-service.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "install-service.sh: $*" >&2; exit 1; }
say() { echo "entityflow: $*"; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 $*): it creates a user and writes under /etc and /opt"
mkdir -p "$root"
root="$(cd "$root" && pwd)"
prefix="${root%/}"                     # "" for the real system
opt="$prefix/opt/entityflow"
etc="$prefix/etc/entityflow"
env_file="$etc/entityflow.env"
units="$prefix/etc/systemd/system"
sysusers="$prefix/etc/sysusers.d/entityflow.conf"
# A live system: systemd is PID 1 and we install into its root.
live=0
if [ -z "$prefix" ] && [ -d /run/systemd/system ]; then live=1; fi
# systemctl works on the unit files alone with --root, no running systemd needed.
systemctl_() {
  if [ "$live" -eq 1 ]; then systemctl "$@"; else systemctl --root="$root" "$@"; fi
}
[ "$now" -eq 0 ] || [ "$live" -eq 1 ] || die "--now needs a running systemd and no --root"

if [ "$uninstall" -eq 1 ]; then
  if [ -e "$units/entityflow.service" ] || [ -e "$units/entityflow.socket" ]; then
    if [ "$live" -eq 1 ]; then
      systemctl disable --now entityflow.socket entityflow.service 2>/dev/null || true
    else
      systemctl_ disable entityflow.socket entityflow.service 2>/dev/null || true
    fi
  fi
  rm -f "$units/entityflow.service" "$units/entityflow.socket"
  [ "$live" -eq 0 ] || systemctl daemon-reload
  rm -rf "$opt"
  say "removed the units and $opt"
  if [ "$purge" -eq 1 ]; then
    rm -rf "$etc" "$prefix/var/lib/entityflow" "$prefix/var/log/entityflow" "$sysusers"
    if grep -q '^entityflow:' "$prefix/etc/passwd" 2>/dev/null; then
      if [ -z "$prefix" ]; then userdel entityflow; else userdel --root "$root" entityflow; fi
    fi
    say "purged settings, data, logs and the entityflow user"
  else
    say "kept $env_file and the data in /var/lib/entityflow (--purge removes them)"
  fi
  exit 0
fi

command -v systemctl >/dev/null || die "systemctl not found: is this a systemd system?"
command -v "$python" >/dev/null || die "$python not found (--python PY names another)"

# 1. The system user, declared the systemd way; creating it again is a no-op.
install -D -m 0644 "$here/systemd/entityflow.sysusers" "$sysusers"
if command -v systemd-sysusers >/dev/null; then
  systemd-sysusers --root="$root" "$sysusers"
elif ! grep -q '^entityflow:' "$prefix/etc/passwd" 2>/dev/null; then
  if [ -z "$prefix" ]; then
    useradd --system --user-group --home-dir /var/lib/entityflow --no-create-home \
      --shell /usr/sbin/nologin entityflow
  else
    useradd --root "$root" --system --user-group --home-dir /var/lib/entityflow \
      --no-create-home --shell /usr/sbin/nologin entityflow
  fi
fi
gid="$(awk -F: '$1 == "entityflow" { print $3 }' "$prefix/etc/group")"
[ -n "$gid" ] || die "the entityflow group was not created"

# 2. The venv: made once, the package (re)installed each time, which is also the upgrade.
if [ ! -x "$opt/venv/bin/python" ]; then
  say "creating the venv in $opt/venv"
  "$python" -m venv "$opt/venv"
fi
if [ "$source_spec" = "$here" ]; then
  # Build from a clean copy: an in-tree build would reuse build/ and could ship stale files.
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  cp -r "$here/pyproject.toml" "$here/README.md" "$here/src" "$build/"
  for license in "$here"/LICENSE*; do [ ! -e "$license" ] || cp "$license" "$build/"; done
  rm -rf "$build"/src/*.egg-info
  source_spec="$build"
fi
# The versions CI tested (constraints.txt, made by `make lock`), not the newest in the ranges.
pinned=()
if [ -n "$constraints" ]; then
  [ -f "$constraints" ] || die "no constraints file $constraints (--constraints '' installs unpinned)"
  pinned=(--constraint "$constraints")
fi
# shellcheck disable=SC2086  # pip_args is a list of words
"$opt/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade "${pinned[@]}" $pip_args \
  "$source_spec"
[ -x "$opt/venv/bin/entityflow" ] || die "pip did not install the entityflow command"
install -D -m 0644 "$here/docs/operations.md" "$opt/docs/operations.md"

# 3. Settings and keys: written once, never overwritten; readable by root and the service.
install -d -m 0750 -o root -g "$gid" "$etc"
if [ ! -e "$env_file" ]; then
  key="$("$python" -c 'import secrets; print(secrets.token_urlsafe(32))')"
  (
    umask 077
    cat >"$env_file" <<SETTINGS
# entityflow settings, read by systemd (KEY=value lines, no shell syntax). Every setting is in
# the README's Settings table; restart the service after a change.
ENTITYFLOW_API_KEYS=$key
ENTITYFLOW_HOST=127.0.0.1
ENTITYFLOW_PORT=8080
# ENTITYFLOW_WORKERS=4
# ENTITYFLOW_STORE=firestore://my-project
# ENTITYFLOW_LOG_FORMAT=json
SETTINGS
  )
  say "wrote $env_file with a new API key (ENTITYFLOW_API_KEYS)"
else
  say "kept $env_file as it is"
fi
chown "root:$gid" "$env_file"
chmod 0640 "$env_file"

# 4. The units, enabled.
install -D -m 0644 "$here/systemd/entityflow.service" "$units/entityflow.service"
install -D -m 0644 "$here/systemd/entityflow.socket" "$units/entityflow.socket"
[ "$live" -eq 0 ] || systemctl daemon-reload
systemctl_ enable --quiet entityflow.service
if [ "$socket" -eq 1 ]; then systemctl_ enable --quiet entityflow.socket; fi
if [ "$now" -eq 1 ]; then
  if [ "$socket" -eq 1 ]; then systemctl start entityflow.socket; fi
  systemctl restart entityflow.service
  say "started; systemctl status entityflow"
else
  say "installed and enabled; start it with: systemctl start entityflow"
fi
