#!/usr/bin/env bash
# The PostgreSQL figures of the README's Performance section, next to SQLite's on the same
# machine in the same run: starts a private PostgreSQL cluster (Debian's postgresql, as root: the
# server runs as the postgres account), then
#   1. warm tokens/s, RUNS interleaved runs per backend (medians and spread in the README);
#   2. cold logins/s on each backend;
#   3. change propagation to 3 replicas over 200 changes (p50, p99, max);
#   4. server start with 100,000 users and 1,000,000 memberships on PostgreSQL;
#   5. instructions per warm token on each backend (callgrind, scripts/measure-overhead.sh).
# Usage: cargo build --release && scripts/bench-postgres.sh    (RUNS=3 SECS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-5}
BENCH=target/release/portcullis-bench
[[ -x $BENCH ]] || { echo "build first: cargo build --release" >&2; exit 1; }
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
[[ -x $BIN/postgres ]] || { echo "install the Debian package postgresql" >&2; exit 1; }

dir=$(mktemp -d /tmp/pc-bench-pg-XXXXXX)
chown postgres: "$dir"
chmod 755 "$dir"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
as_postgres "$BIN/initdb" -D "$dir/pg" -A trust -U portcullis >/dev/null
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# exec: $! is the postmaster itself, so that the cleanup's signal reaches it.
(exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$BIN/postgres" -D "$dir/pg" -p "$pg_port" \
  -c listen_addresses=127.0.0.1 -k "$dir" >"$dir/postgres.log" 2>&1) &
postmaster=$!
cleanup() { kill -INT "$postmaster" 2>/dev/null || true; wait "$postmaster" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
psql() { command psql -h 127.0.0.1 -p "$pg_port" -U portcullis -d postgres -Atqc "$1"; }
for _ in $(seq 100); do psql "SELECT 1" >/dev/null 2>&1 && break; sleep 0.1; done
url() { echo "postgres://portcullis@127.0.0.1:$pg_port/$1"; }
# A new database per run (called in $(...), so the name is random rather than counted).
fresh() { local name="$1_$RANDOM$RANDOM"; psql "CREATE DATABASE $name" >/dev/null; url "$name"; }
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port (fsync on, defaults)"

echo "== warm, $RUNS interleaved runs of $SECS s per backend (columns: conns secs tokens/s p50 p99 max errors peakRSS)"
for run in $(seq "$RUNS"); do
  for backend in sqlite postgres; do
    args=(run --scenarios warm --seconds "$SECS")
    [[ $backend == postgres ]] && args+=(--database "$(fresh bench_warm)")
    printf '%-9s run %s: ' "$backend" "$run"
    "$BENCH" "${args[@]}" | grep -E '^warm'
  done
done

echo "== cold, one run of $SECS s per backend"
for backend in sqlite postgres; do
  args=(run --scenarios cold --seconds "$SECS")
  [[ $backend == postgres ]] && args+=(--database "$(fresh bench_cold)")
  printf '%-9s: ' "$backend"
  "$BENCH" "${args[@]}" | grep -E '^cold|of the hashing limit' | tr '\n' ' '
  echo
done

echo "== propagation"
"$BENCH" propagation --database "$(fresh bench_propagation)" --replicas 3 --changes 200

echo "== 100,000 users, 10,000 projects, 1,000,000 memberships on PostgreSQL"
big=$(fresh bench_big)
scratch=$(mktemp -d /tmp/pc-bench-big-XXXXXX)
"$BENCH" generate --data-dir "$scratch" --database "$big"
"$BENCH" run --data-dir "$scratch" --database "$big" --scenarios warm,many --seconds "$SECS" | grep -E '^(server|warm|many)'
rm -rf "$scratch"

echo "== instructions per warm token (callgrind), SQLite, then PostgreSQL (scripts/measure-overhead.sh)"
# The same binary under a second name, which measure-overhead.sh runs on a fresh database each
# time (AFTER_DATABASE_CMD).
ln -sf "$(pwd)/target/release/portcullis" "$dir/portcullis-on-postgres"
export pg_port
export -f psql url fresh
AFTER_DATABASE_CMD="fresh bench_callgrind" scripts/measure-overhead.sh target/release/portcullis "$dir/portcullis-on-postgres" 1
