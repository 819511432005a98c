#!/usr/bin/env bash
# Makes sure a PostgreSQL the tests can use listens on 127.0.0.1:5432: users
# `postgres` and `root` with trust auth over local TCP and a database `test`
# (what crates/provider/tests and crates/bench connect to).
# Something already listening there is left alone. Otherwise Debian's
# `postgresql` package is installed when missing, its cluster is given trust
# auth for loopback and started with pg_ctlcluster (no systemd needed).
set -euo pipefail

host=127.0.0.1
port=5432

listening() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

if listening; then
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  echo "nothing listens on $host:$port: installing Debian's postgresql"
  "${sudo_cmd[@]}" apt-get update -qq
  # policy-rc.d or a missing systemd may stop the package from starting the
  # cluster itself; it is started below either way.
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq postgresql
fi

# The newest installed major version, and its cluster `main` (made if absent).
bin=$(compgen -G "/usr/lib/postgresql/*/bin/postgres" | sort -V | tail -n 1 || true)
if [ -z "$bin" ]; then
  echo "PostgreSQL is not installed under /usr/lib/postgresql after apt-get: install the 'postgresql' package by hand" >&2
  exit 1
fi
version=$(basename "$(dirname "$(dirname "$bin")")")
conf="/etc/postgresql/$version/main"
if [ ! -d "$conf" ]; then
  "${sudo_cmd[@]}" pg_createcluster "$version" main --port "$port"
fi

# Trust for loopback TCP and the local socket, first in the file so that it
# wins over Debian's peer/scram defaults; added once.
hba="$conf/pg_hba.conf"
marker="# zg-serving tests: trust on loopback"
if ! "${sudo_cmd[@]}" grep -qF "$marker" "$hba"; then
  tmp=$(mktemp)
  {
    echo "$marker"
    echo "local all all trust"
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
    "${sudo_cmd[@]}" cat "$hba"
  } >"$tmp"
  "${sudo_cmd[@]}" install -m 640 -o postgres -g postgres "$tmp" "$hba"
  rm -f "$tmp"
fi

"${sudo_cmd[@]}" pg_ctlcluster "$version" main start || true
for _ in $(seq 1 30); do
  listening && break
  sleep 1
done
if ! listening; then
  echo "PostgreSQL $version/main did not start listening on $host:$port: see /var/log/postgresql/postgresql-$version-main.log" >&2
  exit 1
fi

psql_as_postgres() { psql -h "$host" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
[ "$(psql_as_postgres "SELECT 1 FROM pg_roles WHERE rolname = 'root'")" = 1 ] ||
  psql_as_postgres "CREATE ROLE root SUPERUSER LOGIN"
[ "$(psql_as_postgres "SELECT 1 FROM pg_database WHERE datname = 'test'")" = 1 ] ||
  psql_as_postgres "CREATE DATABASE test"
echo "PostgreSQL $version listens on $host:$port (database test, users postgres and root, trust)"
