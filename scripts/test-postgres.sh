#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: its own data directory under /tmp, its own port, trust auth on
# 127.0.0.1 only, fsync off. Nothing of the machine's own PostgreSQL (if any) is used or touched.
#
#   scripts/test-postgres.sh start [--install] [--owner PID] [PORT]
#                                      prints BRIEFBOT_PG_DIR=... and BRIEFBOT_TEST_POSTGRES_URL=...
#   scripts/test-postgres.sh stop DIR  stops that cluster and deletes its directory
#   scripts/test-postgres.sh pause DIR / resume DIR
#                                      stops that cluster's server (keeping its data) / starts it again on its
#                                      port: an outage, for the tests of what the bot does meanwhile
#
# `--install` installs the server from Debian's packages when it is missing (needs root; CI uses it). As root the
# cluster runs as the `postgres` user, because PostgreSQL refuses to run as root. `--owner PID` names the process
# the cluster belongs to (pytest, .ci/run): a later `start` stops clusters whose owner is gone without stopping
# them (a test run that was killed), so they do not pile up.
set -euo pipefail

find_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

sweep_orphans() {
  local owner_file owner
  for owner_file in /tmp/briefbot-pg.*/owner.pid; do
    [ -f "$owner_file" ] || continue
    owner="$(cat "$owner_file" 2>/dev/null || true)"
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
      echo "test-postgres: stopping $(dirname "$owner_file"), left by process $owner that is gone" >&2
      stop "$(dirname "$owner_file")"
    fi
  done
}

start() {
  local install=0 port=55432 owner=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --install) install=1 ;;
      --owner) owner="$2"; shift ;;
      *) port="$1" ;;
    esac
    shift
  done
  sweep_orphans
  local bindir
  if ! bindir="$(find_bindir)"; then
    if [ "$install" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "test-postgres: installing the PostgreSQL server from Debian's packages" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
      bindir="$(find_bindir)"
    else
      echo "test-postgres: no PostgreSQL server installed (apt-get install postgresql)" >&2
      return 3
    fi
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "test-postgres: running as root needs the 'postgres' user (made by Debian's postgresql package)" >&2
    return 3
  fi

  local dir
  dir="$(mktemp -d /tmp/briefbot-pg.XXXXXX)"
  chmod 755 "$dir"
  if [ -n "$owner" ]; then echo "$owner" >"$dir/owner.pid"; fi
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; return 1; }

  local tries=0
  while :; do
    if port_free "$port" && serve "$bindir" "$dir" "$port"; then
      echo "$port" >"$dir/port"
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 20 ]; then
      echo "test-postgres: could not start a cluster (ports $((port - tries + 1))..$port); log:" >&2
      tail -20 "$dir/server.log" >&2 || true
      rm -rf "$dir"
      return 1
    fi
    port=$((port + 1))
  done
  echo "BRIEFBOT_PG_DIR=$dir"
  echo "BRIEFBOT_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
}

serve() {
  local bindir="$1" dir="$2" port="$3"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB" \
    start >/dev/null 2>&1
}

ours() {
  case "$1" in /tmp/briefbot-pg.*) ;; *) echo "test-postgres: not a cluster of this script: $1" >&2; return 2 ;; esac
}

pause() {
  local dir="${1:?usage: test-postgres.sh pause DIR}" bindir
  ours "$dir" && bindir="$(find_bindir)"
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

resume() {
  local dir="${1:?usage: test-postgres.sh resume DIR}" bindir
  ours "$dir" && bindir="$(find_bindir)"
  serve "$bindir" "$dir" "$(cat "$dir/port")" || { tail -20 "$dir/server.log" >&2; return 1; }
}

stop() {
  local dir="${1:?usage: test-postgres.sh stop DIR}"
  ours "$dir" || return 2
  local bindir
  if [ -d "$dir/data" ] && bindir="$(find_bindir)"; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  pause) shift; pause "$@" ;;
  resume) shift; resume "$@" ;;
  *) echo "usage: $0 start [--install] [--owner PID] [PORT] | stop DIR | pause DIR | resume DIR" >&2; exit 2 ;;
esac
