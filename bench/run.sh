#!/usr/bin/env bash
# RedisRec benchmark: a synthetic shop, then redis-benchmark of REC.* commands against plain Redis
# baselines on the same server. Run by `make bench` (which builds the module first).
#
# Environment (all optional):
#   BENCH_PORT=6390        loopback port of the server this script starts
#   BENCH_CLIENTS=50       redis-benchmark -c
#   BENCH_N=200000         most requests per benchmark
#   BENCH_SECONDS=20       time budget per benchmark: fewer requests when a command is slow
#   BENCH_ITEMS=10000 BENCH_CATEGORIES=50 BENCH_USERS=100000 BENCH_EVENTS=1000000 BENCH_ZIPF=1.1
#   BENCH_EXTRAS=1         also benchmark REC.SIMILAR and REC.POPULAR (0 to skip)
#   BENCH_OUT=bench/results/latest.md
#   BENCH_MODULE=target/release/libredisrec.so   the module to load
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

PORT=${BENCH_PORT:-6390}
CLIENTS=${BENCH_CLIENTS:-50}
MAX_N=${BENCH_N:-200000}
SECONDS_PER_BENCH=${BENCH_SECONDS:-20}
ITEMS=${BENCH_ITEMS:-10000}
CATEGORIES=${BENCH_CATEGORIES:-50}
USERS=${BENCH_USERS:-100000}
EVENTS=${BENCH_EVENTS:-1000000}
ZIPF=${BENCH_ZIPF:-1.1}
EXTRAS=${BENCH_EXTRAS:-1}
OUT=${BENCH_OUT:-bench/results/latest.md}
MODULE=${BENCH_MODULE:-$ROOT/target/release/libredisrec.so}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run make deps)"
done
[ -f "$MODULE" ] || die "$MODULE not found (run make build)"
MODULE=$(cd "$(dirname "$MODULE")" && pwd)/$(basename "$MODULE") # redis-server runs in --dir

cli() { redis-cli -p "$PORT" "$@"; }
info_field() { # info_field <section> <field>
    cli INFO "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}

if cli PING >/dev/null 2>&1; then
    die "something already answers on port $PORT; set BENCH_PORT"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/redisrec-bench.XXXXXX")
SERVER_PID=""
cleanup() {
    local rc=$?
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -f "$WORK/redis.log" ]; then
        log "server log (last 20 lines):"
        tail -n 20 "$WORK/redis.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
log "starting redis-server on 127.0.0.1:$PORT with $MODULE"
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" --daemonize no \
    --loadmodule "$MODULE" &
SERVER_PID=$!
for _ in $(seq 100); do
    cli PING >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "redis-server exited"
    sleep 0.1
done
cli PING >/dev/null 2>&1 || die "redis-server did not answer within 10 s"
MODULES=$(cli MODULE LIST)
grep -qx rec <<<"$MODULES" || die "module rec is not loaded"
REDIS_VERSION=$(info_field server redis_version)
MODULE_VERSION=$(awk 'prev == "ver" { print; exit } { prev = $0 }' <<<"$MODULES")

GEN=(python3 bench/gen_shop.py --items "$ITEMS" --categories "$CATEGORIES" --users "$USERS"
    --events "$EVENTS" --zipf "$ZIPF")

# pipe_load <what>: generated protocol into redis-cli --pipe; fails on any error reply.
pipe_load() {
    local what=$1 out="$WORK/pipe-$1.out"
    "${GEN[@]}" "$what" | cli --pipe >"$out" 2>&1 || true
    local summary
    summary=$(grep -E '^errors: [0-9]+, replies: [0-9]+' "$out" | tail -n 1)
    [ -n "$summary" ] || { cat "$out" >&2; die "redis-cli --pipe did not finish loading $what"; }
    if ! [[ $summary =~ ^errors:\ 0, ]]; then
        grep -v -E '^(All data transferred|Last reply received|errors:)' "$out" | head -n 5 >&2 || true
        die "loading $what: $summary"
    fi
    log "$what: $summary"
}

# ---------------------------------------------------------------------------------------------
log "loading $ITEMS items in $CATEGORIES categories (REC.ITEM.SET)"
pipe_load items

MEM_BEFORE=$(info_field memory used_memory)
RSS_BEFORE=$(info_field memory used_memory_rss)

log "loading $EVENTS events of $USERS users (REC.TRACK ... TS), Zipf s=$ZIPF"
t0=$(date +%s.%N)
pipe_load events
t1=$(date +%s.%N)
LOAD_SECONDS=$(python3 -c "print(f'{$t1 - $t0:.1f}')")

MEM_AFTER=$(info_field memory used_memory)
RSS_AFTER=$(info_field memory used_memory_rss)
USER_KEYS=$(cli DBSIZE)
# The module's own accounting: events, catalog and memory per structure.
INFO_REC=$(cli INFO rec | tr -d '\r' |
    awk '/^#/ { keep = ($2 ~ /^rec_(events|catalog|memory)$/) } keep && NF' || true)

# A taste of the result, to see that recommendations come out of the loaded shop.
SAMPLE_USER=$(cli RANDOMKEY | sed -n 's/^rec:{\(.*\)}:u$/\1/p')
SAMPLE_USER=${SAMPLE_USER:-u:000000000007}
log "sample: REC.GET $SAMPLE_USER COUNT 5 WITHREASONS NOCACHE"
cli REC.GET "$SAMPLE_USER" COUNT 5 WITHREASONS NOCACHE >&2 || true

log "baseline keys: $USERS strings for GET"
pipe_load strings

# ---------------------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

# bench <label> <keyspace> <command...>: redis-benchmark with a time budget; appends to RESULTS.
bench() {
    local label=$1 keyspace=$2
    shift 2
    # One concrete call first, so a command error shows up as itself, not as a fast benchmark.
    local probe_args=("${@//__rand_int__/000000000001}") reply
    reply=$(cli "${probe_args[@]}" 2>&1 | head -c 300) || true
    case "$reply" in
        ERR* | WRONGTYPE* | "(error)"*) die "$label: '${probe_args[*]}' answered: $reply" ;;
    esac
    # Probe the rate, then size the run to fit BENCH_SECONDS (at most BENCH_N requests).
    local rps n
    rps=$(redis-benchmark -p "$PORT" -c "$CLIENTS" -n 5000 -r "$keyspace" --csv "$@" |
        awk -F'","' 'NR == 2 { print $2 }')
    [ -n "$rps" ] || die "$label: redis-benchmark probe gave no result"
    n=$(python3 -c "print(max(10000, min($MAX_N, int(float('$rps') * $SECONDS_PER_BENCH))))")
    local err0 err1 csv
    err0=$(info_field stats total_error_replies)
    log "$label: $n requests, $CLIENTS clients: $*"
    csv=$(timeout $((SECONDS_PER_BENCH * 4 + 30)) \
        redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$n" -r "$keyspace" --csv "$@") ||
        die "$label: redis-benchmark failed or timed out"
    err1=$(info_field stats total_error_replies)
    # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",...
    echo "$csv" | awk -F'","' -v label="$label" -v n="$n" -v errs=$((err1 - err0)) -v cmd="$*" \
        'NR == 2 { OFS = "\t"; print label, cmd, n, $2, $5, $7, errs }' >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "    %s req/s, p50 %s ms, p99 %s ms, errors %s\n", $4, $5, $6, $7 }' >&2
}

bench get 100000 GET "bs:u:__rand_int__"
bench rec_get "$USERS" REC.GET "u:__rand_int__" NOCACHE
bench hincrby 10000 HINCRBY "bh:u:__rand_int__" "i:__rand_int__" 1
# -r applies to both placeholders: users and items 0..min(ITEMS,USERS)-1, all of which exist.
bench rec_track "$((ITEMS < USERS ? ITEMS : USERS))" REC.TRACK "u:__rand_int__" "i:__rand_int__" view
if [ "$EXTRAS" = 1 ]; then
    bench rec_similar "$ITEMS" REC.SIMILAR "i:__rand_int__"
    bench rec_popular 1 REC.POPULAR
fi

# ---------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
export RESULTS REDIS_VERSION MODULE_VERSION CLIENTS ITEMS CATEGORIES USERS EVENTS ZIPF LOAD_SECONDS \
    MEM_BEFORE MEM_AFTER RSS_BEFORE RSS_AFTER USER_KEYS INFO_REC SECONDS_PER_BENCH MAX_N
python3 - "$OUT" <<'PY'
import os, platform, subprocess, sys, time

e = os.environ
rows = {}
order = []
for line in open(e["RESULTS"]):
    label, cmd, n, rps, p50, p99, errs = line.rstrip("\n").split("\t")
    rows[label] = dict(cmd=cmd, n=int(n), rps=float(rps), p50=p50, p99=p99, errs=int(errs))
    order.append(label)

def cpu():
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"

def rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception:
        return "uncommitted"

def ratio(a, b):
    return f"{rows[a]['rps'] / rows[b]['rps']:.2f}" if a in rows and b in rows and rows[b]["rps"] else "n/a"

notes = {
    "get": "baseline: 200-byte string",
    "rec_get": "uncached (NOCACHE), COUNT 10",
    "hincrby": "baseline: counter in a hash",
    "rec_track": "no TS: server clock",
    "rec_similar": "",
    "rec_popular": "",
}
events, users = int(e["EVENTS"]), int(e["USERS"])
mb, ma = int(e["MEM_BEFORE"]), int(e["MEM_AFTER"])
rb, ra = int(e["RSS_BEFORE"]), int(e["RSS_AFTER"])
L = []
L.append(f"# RedisRec benchmark — {time.strftime('%Y-%m-%d %H:%M %Z')}")
L.append("")
L.append(f"Redis {e['REDIS_VERSION']}, module `rec` version {e['MODULE_VERSION']} (git {rev()}), "
         f"{cpu()}, {os.cpu_count()} CPUs; redis-benchmark and redis-server on the same host, "
         f"`-c {e['CLIENTS']}`, no pipelining, up to {e['MAX_N']} requests or ~{e['SECONDS_PER_BENCH']} s per row.")
L.append("")
L.append(f"Shop: {int(e['ITEMS']):,} items in {e['CATEGORIES']} categories, {users:,} users, "
         f"{events:,} events (item popularity Zipf s={e['ZIPF']}, mostly views), "
         f"loaded through `redis-cli --pipe` in {e['LOAD_SECONDS']} s "
         f"({events / max(float(e['LOAD_SECONDS']), 1e-9):,.0f} events/s).")
L.append("")
L.append("| command | requests | requests/s | p50 ms | p99 ms | errors | note |")
L.append("|---|---:|---:|---:|---:|---:|---|")
for k in order:
    r = rows[k]
    L.append(f"| `{r['cmd']}` | {r['n']:,} | {r['rps']:,.0f} | {r['p50']} | {r['p99']} | {r['errs']} | {notes.get(k, '')} |")
L.append("")
L.append("| ratio | value |")
L.append("|---|---:|")
L.append(f"| REC.TRACK / HINCRBY requests/s | {ratio('rec_track', 'hincrby')} |")
L.append(f"| REC.GET / GET requests/s | {ratio('rec_get', 'get')} |")
L.append("")
L.append("| memory (`INFO memory`) | value |")
L.append("|---|---:|")
L.append(f"| used_memory after the catalog, before events | {mb:,} B |")
L.append(f"| used_memory after {events:,} events | {ma:,} B |")
L.append(f"| used_memory delta per event stored | {(ma - mb) / max(events, 1):,.1f} B |")
L.append(f"| used_memory_rss delta per event | {(ra - rb) / max(events, 1):,.1f} B |")
L.append(f"| keys (user state) after events | {int(e['USER_KEYS']):,} |")
info = e.get("INFO_REC", "").strip()
if info:
    L.append("")
    L.append("<details><summary>INFO rec after loading</summary>")
    L.append("")
    L.append("```")
    L.append(info)
    L.append("```")
    L.append("</details>")
L.append("")
text = "\n".join(L)
print(text)
with open(sys.argv[1], "w") as f:
    f.write(text)
PY
log "written to $OUT"
