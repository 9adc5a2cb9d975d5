#!/usr/bin/env bash
# Installs lookout as a systemd service:
#   PREFIX/bin/lookout                     the binary (built with cargo, or --binary PATH)
#   /etc/systemd/system/lookout.service    the unit (enabled; restarted on upgrade if it runs)
#   /etc/lookout/lookout.toml              the configuration (0640 root:lookout, never overwritten)
#   /etc/lookout/lookout.env               secrets and overrides (0600 root:root, never overwritten)
#   /var/lib/lookout                       state (0750 lookout:lookout)
# and a `lookout` system user in the `docker` group.
#
# Running it again is safe: what is already in place is left alone, existing configuration is
# kept. With DESTDIR set, everything goes below DESTDIR and the steps that change the running
# system (useradd, chown, systemctl) are only printed. --dry-run prints every step and changes
# nothing.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/install.sh [--binary PATH] [--prefix DIR] [--dry-run]

  --binary PATH   install this lookout binary instead of building one (cargo build --release)
  --prefix DIR    where the binary goes: DIR/bin/lookout (default /usr/local)
  --dry-run       print what would be done, change nothing
environment:
  DESTDIR         install below this folder (packaging, tests); skips useradd, chown, systemctl
  CARGO_TARGET_DIR  where cargo puts the build (default: the repository's target/)
EOF
}

binary=""
prefix=/usr/local
dry_run=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --binary) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; binary=$2; shift 2 ;;
    --binary=*) binary=${1#--binary=}; shift ;;
    --prefix) [ "$#" -ge 2 ] || { usage >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
destdir=${DESTDIR:-}
destdir=${destdir%/}
user=lookout
unit_name=lookout.service

log() { printf 'install.sh: %s\n' "$*"; }

# Reports a change that was made (under --dry-run, `run` already printed it).
did() { [ "$dry_run" -eq 1 ] || log "$*"; }

# Runs a command that changes something, or only prints it under --dry-run.
run() {
  if [ "$dry_run" -eq 1 ]; then
    printf 'install.sh: would run:%s\n' "$(printf ' %q' "$@")"
  else
    "$@"
  fi
}

# Runs a command that changes the running system (users, owners, systemd); with DESTDIR set it
# is only printed, since it would not concern the files below DESTDIR.
run_system() {
  if [ -n "$destdir" ]; then
    printf 'install.sh: DESTDIR set, not running:%s\n' "$(printf ' %q' "$@")"
  else
    run "$@"
  fi
}

# install_file SRC DEST MODE [keep]: copies SRC to DEST unless it is already there; with `keep`,
# an existing DEST is never replaced. Prints what it did; returns 0 if DEST changed, 1 if not.
install_file() {
  local src=$1 dest=$destdir$2 mode=$3 keep=${4:-}
  if [ -e "$dest" ] && [ "$keep" = keep ]; then
    log "kept $dest (exists; compare with $src)"
    return 1
  fi
  if [ -e "$dest" ] && cmp -s "$src" "$dest"; then
    log "unchanged $dest"
    fix_mode "$2" "$mode"
    return 1
  fi
  run install -D -m "$mode" "$src" "$dest"
  did "installed $dest"
  return 0
}

# make_dir DIR MODE: creates DIR (below DESTDIR) or sets its mode.
make_dir() {
  local dir=$destdir$1 mode=$2
  if [ -d "$dir" ]; then
    fix_mode "$1" "$mode"
  else
    run install -d -m "$mode" "$dir"
    did "created $dir"
  fi
}

fix_mode() {
  local path=$destdir$1 mode=$2
  if [ -e "$path" ] && [ "$(stat -c '%a' "$path")" != "${mode#0}" ]; then
    run chmod "$mode" "$path"
    did "set mode $mode on $path"
  fi
}

if [ -z "$destdir" ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or set DESTDIR, or use --dry-run)" >&2
  exit 1
fi

# 1. The binary.
if [ -z "$binary" ]; then
  binary=${CARGO_TARGET_DIR:-$repo/target}/release/lookout
  run cargo build --release --locked --manifest-path "$repo/Cargo.toml"
fi
if [ -x "$binary" ]; then
  log "binary $binary: $("$binary" --version)"
elif [ "$dry_run" -eq 0 ]; then
  echo "install.sh: $binary is not an executable file" >&2
  exit 1
fi

# 2. The user, in the docker group so it can reach /var/run/docker.sock.
if getent passwd "$user" >/dev/null 2>&1 && [ -z "$destdir" ]; then
  log "user $user exists"
else
  run_system useradd --system --user-group --home-dir /var/lib/lookout --no-create-home \
    --shell /usr/sbin/nologin --comment "lookout image updater" "$user"
fi
if [ -n "$destdir" ]; then
  run_system usermod --append --groups docker "$user"
elif ! getent group docker >/dev/null 2>&1; then
  log "warning: there is no docker group (is Docker installed?); add $user to the group that owns /var/run/docker.sock"
elif id -nG "$user" 2>/dev/null | tr ' ' '\n' | grep -qx docker; then
  log "user $user is in group docker"
else
  run_system usermod --append --groups docker "$user"
fi

# 3. Files.
changed=0
install_file "$binary" "$prefix/bin/lookout" 0755 && changed=1

unit=$(mktemp)
trap 'rm -f "$unit"' EXIT
sed "s#/usr/local/bin/lookout#$prefix/bin/lookout#" "$repo/deploy/systemd/lookout.service" >"$unit"
install_file "$unit" "/etc/systemd/system/$unit_name" 0644 && changed=1

make_dir /etc/lookout 0750
install_file "$repo/config/lookout.toml" /etc/lookout/lookout.toml 0640 keep || true
install_file "$repo/deploy/lookout.env" /etc/lookout/lookout.env 0600 keep || true
env_file=$destdir/etc/lookout/lookout.env
if [ -e "$env_file" ] && [ "$(($(stat -c '0%a' "$env_file") & 077))" -ne 0 ]; then
  log "warning: $env_file holds secrets but is readable by others: chmod 600 $env_file"
fi
make_dir /var/lib/lookout 0750

run_system chown root:"$user" /etc/lookout /etc/lookout/lookout.toml
run_system chown root:root /etc/lookout/lookout.env
run_system chown "$user:$user" /var/lib/lookout

# 4. Enable the unit (and restart it if it runs and something changed).
wants=/etc/systemd/system/multi-user.target.wants/$unit_name
if [ -n "$destdir" ]; then
  if [ "$(readlink "$destdir$wants" 2>/dev/null)" = "/etc/systemd/system/$unit_name" ]; then
    log "unchanged $destdir$wants"
  else
    run mkdir -p "$(dirname "$destdir$wants")"
    run ln -sfn "/etc/systemd/system/$unit_name" "$destdir$wants"
    did "enabled $unit_name ($destdir$wants)"
  fi
  run_system systemctl daemon-reload
elif [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
  run systemctl enable "$unit_name"
  if [ "$changed" -eq 1 ] && systemctl is-active --quiet "$unit_name"; then
    run systemctl restart "$unit_name"
    did "restarted $unit_name"
  fi
else
  log "systemd is not running here: enable $unit_name yourself (systemctl enable $unit_name)"
fi

if [ "$dry_run" -eq 1 ]; then
  log "dry run: nothing was changed"
else
  log "done. Next: list your services in /etc/lookout/lookout.toml, secrets in /etc/lookout/lookout.env,"
  log "  check with: lookout config validate /etc/lookout/lookout.toml"
  log "  let lookout write your compose folders: systemctl edit $unit_name  ([Service] ReadWritePaths=…)"
  log "  then: systemctl start $unit_name"
fi
