#!/usr/bin/env bash
# Removes what deploy/install.sh installed: stops and disables the unit, removes it and the
# binary. Configuration (/etc/lookout) and state (/var/lib/lookout) are kept unless --purge,
# which also removes the `lookout` user. Running it again is safe. DESTDIR and --dry-run work as
# for install.sh.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/uninstall.sh [--purge] [--prefix DIR] [--dry-run]

  --purge         also remove /etc/lookout, /var/lib/lookout and the lookout user
  --prefix DIR    where install.sh put the binary: DIR/bin/lookout (default /usr/local)
  --dry-run       print what would be done, change nothing
environment:
  DESTDIR         remove below this folder; skips userdel and systemctl
EOF
}

prefix=/usr/local
purge=0
dry_run=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --purge) purge=1; shift ;;
    --prefix) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

destdir=${DESTDIR:-}
destdir=${destdir%/}
user=lookout
unit_name=lookout.service

log() { printf 'uninstall.sh: %s\n' "$*"; }
did() { [ "$dry_run" -eq 1 ] || log "$*"; }

run() {
  if [ "$dry_run" -eq 1 ]; then
    printf 'uninstall.sh: would run:%s\n' "$(printf ' %q' "$@")"
  else
    "$@"
  fi
}

run_system() {
  if [ -n "$destdir" ]; then
    printf 'uninstall.sh: DESTDIR set, not running:%s\n' "$(printf ' %q' "$@")"
  else
    run "$@"
  fi
}

# remove PATH...: removes each path (below DESTDIR) that exists.
remove() {
  local path
  for path in "$@"; do
    if [ -e "$destdir$path" ] || [ -L "$destdir$path" ]; then
      run rm -rf -- "$destdir$path"
      did "removed $destdir$path"
    fi
  done
}

if [ -z "$destdir" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (or set DESTDIR, or use --dry-run)" >&2
  exit 1
fi

if [ -z "$destdir" ] && [ -d /run/systemd/system ] && [ -e "/etc/systemd/system/$unit_name" ]; then
  run systemctl disable --now "$unit_name"
fi
remove "/etc/systemd/system/multi-user.target.wants/$unit_name" \
  "/etc/systemd/system/$unit_name" \
  "$prefix/bin/lookout"
if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
fi

if [ "$purge" -eq 1 ]; then
  remove /etc/lookout /var/lib/lookout
  if [ -n "$destdir" ] || getent passwd "$user" >/dev/null 2>&1; then
    run_system userdel "$user"
  fi
else
  log "kept configuration $destdir/etc/lookout and state $destdir/var/lib/lookout (--purge removes them)"
fi

if [ "$dry_run" -eq 1 ]; then
  log "dry run: nothing was changed"
fi
