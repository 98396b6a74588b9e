#!/usr/bin/env bash
# What a change costs on the warm path, two ways (README, Performance: "Cost of the metrics"):
#   1. instructions per warm token request, counted by callgrind (repeatable on a shared
#      machine): the server runs under valgrind twice, once for N1 and once for N2 requests on
#      one keep-alive connection, and (Ir(N2) - Ir(N1)) / (N2 - N1) cancels start and stop;
#   2. warm tokens/s from portcullis-bench, the two binaries interleaved RUNS times each, with
#      the median and the spread.
# Usage: scripts/measure-overhead.sh BEFORE_BINARY AFTER_BINARY [RUNS]
# (portcullis-bench is taken from target/release; build both binaries with --release. The
# benchmark seeds its database with its own code: when the two binaries differ in schema, give
# each its own benchmark with BENCH_BEFORE and BENCH_AFTER, built from the same commits.)
# AFTER_DATABASE_CMD: a command printing a fresh PostgreSQL URL, run before every start of the
# AFTER binary, which then runs on it (scripts/bench-postgres.sh compares the backends so, with
# the same binary under two names).
set -euo pipefail
before=$1 after=$2 runs=${3:-5}
bench=${BENCH:-target/release/portcullis-bench}
bench_before=${BENCH_BEFORE:-$bench} bench_after=${BENCH_AFTER:-$bench}
n1=${N1:-200} n2=${N2:-1200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "valgrind is missing (Debian package valgrind)" >&2; exit 1; }

# One keep-alive connection, COUNT warm token requests of one user.
client() {
    python3 - "$1" "$2" <<'EOF'
import base64, http.client, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
auth = "Basic " + base64.b64encode(b"bench:bench-password-1").decode()
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
for _ in range(count):
    connection.request("GET", "/token?service=registry&scope=repository%3Abench%2Fapp%3Apull%2Cpush",
                       headers={"Authorization": auth})
    response = connection.getresponse()
    response.read()
    assert response.status == 200, response.status
EOF
}

# Instructions the server at BINARY executes for COUNT requests, start and stop included.
instructions() (
    local binary=$1 count=$2 data=$work/data-$RANDOM port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # Exported for this function's commands only (it runs in a subshell): the benchmark runs
    # below must not inherit them, or they would share one data dir across both binaries.
    export PORTCULLIS_DATA_DIR=$data PORTCULLIS_LISTEN=127.0.0.1:$port PORTCULLIS_ADMIN_PASSWORD=admin-password-1
    if [ -n "${AFTER_DATABASE_CMD:-}" ] && [ "$binary" = "$after" ]; then
        PORTCULLIS_DATABASE=$(eval "$AFTER_DATABASE_CMD")
        export PORTCULLIS_DATABASE
    fi
    "$binary" init >/dev/null
    printf 'bench-password-1\n' | "$binary" user add bench --password-stdin >/dev/null
    "$binary" project create bench >/dev/null
    "$binary" member add bench bench --role developer >/dev/null
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" "$binary" serve >"$work/serve.log" 2>&1 &
    local server=$!
    until grep -q "listening on" "$work/serve.log" 2>/dev/null; do sleep 0.2; done
    client "$port" "$count"
    kill -TERM "$server"
    wait "$server" || true
    local total
    total=$(grep -h '^totals:' "$work"/callgrind.* | awk '{sum += $2} END {print sum}')
    rm -f "$work"/callgrind.*
    echo "$total"
)

echo "instructions per warm token request (callgrind, $n1 and $n2 requests):"
for binary in "$before" "$after"; do
    small=$(instructions "$binary" $n1)
    large=$(instructions "$binary" $n2)
    echo "  $binary: $(( (large - small) / (n2 - n1) ))"
done

echo "warm tokens/s (portcullis-bench, 5 s runs, interleaved $runs times):"
for round in $(seq "$runs"); do
    for binary in "$before" "$after"; do
        runner=$bench_after database=()
        [ "$binary" = "$before" ] && runner=$bench_before
        if [ -n "${AFTER_DATABASE_CMD:-}" ] && [ "$binary" = "$after" ]; then
            database=(--database "$(eval "$AFTER_DATABASE_CMD")")
        fi
        rate=$("$runner" run --scenarios warm --seconds 5 --portcullis "$binary" "${database[@]}" | awk '/^warm \(1 user\)/ {print $6}')
        echo "$binary $rate" >>"$work/rates"
        echo "  round $round: $binary $rate"
    done
done
for binary in "$before" "$after"; do
    grep "^$binary " "$work/rates" | awk '{print $2}' | tr -d , | sort -n | awk -v name="$binary" '
        {v[NR] = $1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
        printf "  %s: median %d, min %d, max %d\n", name, m, v[1], v[NR]}'
done
