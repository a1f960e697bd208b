#!/usr/bin/env bash
# RedisRec benchmark: a synthetic shop, then redis-benchmark of REC.* commands against plain Redis
# baselines on the same server, the recommendation cache (L1, L2, a Zipf request mix) and the cost
# of monitoring. Run by `make bench` (which builds the module first). Loopback only.
#
# Environment (all optional):
#   BENCH_PORT=6390        loopback port of the server this script starts
#   BENCH_CLIENTS=50       redis-benchmark -c
#   BENCH_N=200000         most requests per benchmark row without pipelining
#   BENCH_N_PIPELINE=1000000  most requests per pipelined row
#   BENCH_SECONDS=8        time budget of a row of section 1 (uncached REC.GET ...): fewer requests
#   BENCH_MAIN_ROUNDS=3    rounds of section 1 (GET, REC.GET NOCACHE, HINCRBY, REC.TRACK)
#   BENCH_FAST_SECONDS=3   time budget of the cache and monitoring rows
#   BENCH_PIPELINE=16      redis-benchmark -P of the pipelined cache rows
#   BENCH_ROUNDS=4         rounds of the cache rows (GET, L1, L2); ratios are medians over rounds
#   BENCH_MON_ROUNDS=6     rounds of metrics on/off rows (each setting once per round, alternating)
#   BENCH_CACHE_USERS=10000   users 0..N-1 of the L1/L2 rows (at most rec.l1-size and BENCH_USERS)
#   BENCH_ZIPF_SECONDS=120 length of the Zipf request mix (0 to skip it)
#   BENCH_ZIPF_S=1.1       Zipf exponent of user popularity in that mix
#   BENCH_ZIPF_CHECK_TTL=10 BENCH_ZIPF_CHECK_SECONDS=40   the same mix with a short rec.cache-ttl,
#                          long enough for a steady state, to check the steady-state model (0: skip)
#   BENCH_ITEMS=10000 BENCH_CATEGORIES=50 BENCH_USERS=100000 BENCH_EVENTS=1000000 BENCH_ZIPF=1.1
#   BENCH_EXTRAS=1         also benchmark REC.SIMILAR and REC.POPULAR (0 to skip)
#   BENCH_OUT=bench/results/latest.md
#   BENCH_MODULE=target/release/libredisrec.so   the module to load (a copy of it is loaded)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

PORT=${BENCH_PORT:-6390}
CLIENTS=${BENCH_CLIENTS:-50}
MAX_N=${BENCH_N:-200000}
MAX_N_PIPE=${BENCH_N_PIPELINE:-1000000}
SECONDS_PER_BENCH=${BENCH_SECONDS:-8}
MAIN_ROUNDS=${BENCH_MAIN_ROUNDS:-3}
FAST_SECONDS=${BENCH_FAST_SECONDS:-3}
PIPELINE=${BENCH_PIPELINE:-16}
ROUNDS=${BENCH_ROUNDS:-4}
MON_ROUNDS=${BENCH_MON_ROUNDS:-6}
CACHE_USERS=${BENCH_CACHE_USERS:-10000}
ZIPF_SECONDS=${BENCH_ZIPF_SECONDS:-120}
ZIPF_S=${BENCH_ZIPF_S:-1.1}
ZIPF_CHECK_TTL=${BENCH_ZIPF_CHECK_TTL:-10}
ZIPF_CHECK_SECONDS=${BENCH_ZIPF_CHECK_SECONDS:-40}
ITEMS=${BENCH_ITEMS:-10000}
CATEGORIES=${BENCH_CATEGORIES:-50}
USERS=${BENCH_USERS:-100000}
EVENTS=${BENCH_EVENTS:-1000000}
ZIPF=${BENCH_ZIPF:-1.1}
EXTRAS=${BENCH_EXTRAS:-1}
OUT=${BENCH_OUT:-bench/results/latest.md}
MODULE_SRC=${BENCH_MODULE:-$ROOT/target/release/libredisrec.so}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in redis-server redis-cli redis-benchmark python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run make deps)"
done
[ -f "$MODULE_SRC" ] || die "$MODULE_SRC not found (run make build)"

cli() { redis-cli -p "$PORT" "$@"; }
info_field() { # info_field <section> <field>
    cli INFO "$1" | tr -d '\r' | awk -F: -v f="$2" '$1 == f { print $2 }'
}
config_get() { cli CONFIG GET "$1" | sed -n 2p; }
config_set() {
    local r
    r=$(cli CONFIG SET "$1" "$2")
    [ "$r" = OK ] || die "CONFIG SET $1 $2: $r"
}

if cli PING >/dev/null 2>&1; then
    die "something already answers on port $PORT; set BENCH_PORT"
fi

T_START=$(date +%s)
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

# A private copy of the module: a `cargo build` during the run cannot change what is loaded.
MODULE=$WORK/libredisrec.so
cp "$MODULE_SRC" "$MODULE"
MODULE_SHA=$(sha256sum "$MODULE" | cut -c1-12)

# ---------------------------------------------------------------------------------------------
log "starting redis-server on 127.0.0.1:$PORT with a copy of $MODULE_SRC (sha256 $MODULE_SHA)"
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
L1_SIZE=$(config_get rec.l1-size)
CACHE_TTL=$(config_get rec.cache-ttl)
[ "$CACHE_USERS" -le "$L1_SIZE" ] || CACHE_USERS=$L1_SIZE
[ "$CACHE_USERS" -le "$USERS" ] || CACHE_USERS=$USERS
[ "$CACHE_USERS" -ge 1 ] || die "rec.l1-size is $L1_SIZE: the L1 rows need L1 on"

GEN=(python3 bench/gen_shop.py --items "$ITEMS" --categories "$CATEGORIES" --users "$USERS"
    --events "$EVENTS" --zipf "$ZIPF")
RB=(timeout 600 python3 bench/recbench.py --port "$PORT")

# pipe_load <what> [gen_shop options]: generated protocol into redis-cli --pipe; fails on any
# error reply.
pipe_load() {
    local what=$1 out="$WORK/pipe-$1.out"
    shift
    "${GEN[@]}" "$@" "$what" | cli --pipe >"$out" 2>&1 || true
    local summary
    summary=$(grep -E '^errors: [0-9]+, replies: [0-9]+' "$out" | tail -n 1)
    [ -n "$summary" ] || { cat "$out" >&2; die "redis-cli --pipe did not finish loading $what"; }
    if ! [[ $summary =~ ^errors:\ 0, ]]; then
        grep -v -E '^(All data transferred|Last reply received|errors:)' "$out" | head -n 5 >&2 || true
        die "loading $what: $summary"
    fi
    log "$what: $summary"
}

# warm <passes>: REC.GET users 0..CACHE_USERS-1, pipelined, <passes> times.
warm() {
    local r
    r=$("${RB[@]}" warm --users "$CACHE_USERS" --passes "$1") || die "warming the cache failed"
    log "warm: $r"
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

# The size of a cached REC.GET reply (RESP2 bytes, source l1), so that the GET baseline strings
# give a reply of the same size: "$<len>\r\n<value>\r\n".
log "reply size: warming users 0..$((CACHE_USERS - 1))"
warm 2
REPLY_JSON=$("${RB[@]}" replysize --users "$CACHE_USERS") || die "measuring the REC.GET reply failed"
REPLY_BYTES=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['median']))" "$REPLY_JSON")
VALUE_SIZE=$(python3 -c "
n = $REPLY_BYTES
v = max(1, n - 5)
while v > 1 and len('\$%d\r\n\r\n' % v) + v > n:
    v -= 1
print(v)")
log "cached REC.GET reply: $REPLY_JSON bytes; GET baseline values: $VALUE_SIZE bytes"

log "baseline keys: $USERS strings of $VALUE_SIZE bytes for GET"
pipe_load strings --value-size "$VALUE_SIZE"
GET_REPLY=$(python3 -c "print(len('\$%d\r\n\r\n' % $VALUE_SIZE) + $VALUE_SIZE)")

# ---------------------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
GROUP=main ROUND=0 METRICS=yes

cache_counters() {
    cli INFO rec_cache | tr -d '\r' | awk -F: '
        $1 == "rec_l1_hits" { a = $2 } $1 == "rec_l2_hits" { b = $2 }
        $1 == "rec_misses" { c = $2 } $1 == "rec_early_refreshes" { d = $2 }
        END { print a + 0, b + 0, c + 0, d + 0 }'
}

# bench <label> <keyspace> <pipeline> <command...>: redis-benchmark with a time budget (SECS,
# default BENCH_SECONDS); appends a row to RESULTS with the cache counters' deltas.
bench() {
    local label=$1 keyspace=$2 pipe=$3
    shift 3
    local secs=${SECS:-$SECONDS_PER_BENCH} popt=() cap=$MAX_N probe_n=5000
    if [ "$pipe" -gt 1 ]; then
        popt=(-P "$pipe")
        cap=$MAX_N_PIPE
        probe_n=$((5000 * pipe > 50000 ? 50000 : 5000 * pipe))
    fi
    # One concrete call first, so a command error shows up as itself, not as a fast benchmark.
    local probe_args=("${@//__rand_int__/000000000001}") reply
    reply=$(cli "${probe_args[@]}" 2>&1 | head -c 300) || true
    case "$reply" in
        ERR* | WRONGTYPE* | "(error)"*) die "$label: '${probe_args[*]}' answered: $reply" ;;
    esac
    # Probe the rate, then size the run to fit the budget (at most BENCH_N requests).
    local rps n
    rps=$(timeout 120 redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$probe_n" -r "$keyspace" \
        "${popt[@]}" --csv "$@" | awk -F'","' 'NR == 2 { print $2 }') || true
    [ -n "$rps" ] || die "$label: redis-benchmark probe gave no result"
    n=$(python3 -c "print(max(10000, min($cap, int(float('$rps') * $secs))))")
    local err0 err1 csv c0 c1
    err0=$(info_field stats total_error_replies)
    c0=$(cache_counters)
    log "$label: $n requests, $CLIENTS clients${popt:+, -P $pipe}: $*"
    csv=$(timeout $((secs * 4 + 30)) \
        redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$n" -r "$keyspace" "${popt[@]}" --csv "$@") ||
        die "$label: redis-benchmark failed or timed out"
    c1=$(cache_counters)
    err1=$(info_field stats total_error_replies)
    local deltas
    deltas=$(paste -d' ' <(tr ' ' '\n' <<<"$c0") <(tr ' ' '\n' <<<"$c1") |
        awk '{ printf "%s%d", (NR > 1 ? "\t" : ""), $2 - $1 }')
    # CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",...
    echo "$csv" | awk -F'","' -v OFS='\t' -v label="$label" -v n="$n" -v errs=$((err1 - err0)) \
        -v cmd="$*" -v pipe="$pipe" -v group="$GROUP" -v round="$ROUND" -v metrics="$METRICS" \
        -v deltas="$deltas" \
        'NR == 2 { print group, round, metrics, label, cmd, pipe, n, $2, $5, $7, errs, deltas }' \
        >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "    %s req/s, p50 %s ms, p99 %s ms, errors %s, cache l1/l2/miss/early %s/%s/%s/%s\n",
        $8, $9, $10, $11, $12, $13, $14, $15 }' >&2
}

# --- 1. REC.* against plain Redis (issue 2) ------------------------------------------------------
# Rounds of back-to-back pairs; the ratios are medians of the per-round ratios.
# -r applies to both placeholders: users and items 0..min(ITEMS,USERS)-1, all of which exist.
TRACK_RANGE=$((ITEMS < USERS ? ITEMS : USERS))
for ROUND in $(seq "$MAIN_ROUNDS"); do
    bench get "$USERS" 1 GET "bs:u:__rand_int__"
    bench rec_get "$USERS" 1 REC.GET "u:__rand_int__" NOCACHE
    bench hincrby 10000 1 HINCRBY "bh:u:__rand_int__" "i:__rand_int__" 1
    bench rec_track "$TRACK_RANGE" 1 REC.TRACK "u:__rand_int__" "i:__rand_int__" view
done
ROUND=0
if [ "$EXTRAS" = 1 ]; then
    bench rec_similar "$ITEMS" 1 REC.SIMILAR "i:__rand_int__"
    bench rec_popular 1 1 REC.POPULAR
fi

# --- 2. Cache: L1 and L2 hits against GET of the same reply size (issue 3) --------------------
# Users 0..CACHE_USERS-1 fit in L1. A fresh start (REC.INVALIDATE ALL), then two passes: the first
# computes and fills both tiers, the second is served from L1. For L2, rec.l1-size 0 turns L1 off.
GROUP=cache SECS=$FAST_SECONDS
log "cache: REC.INVALIDATE ALL, then warming users 0..$((CACHE_USERS - 1))"
cli REC.INVALIDATE ALL >/dev/null
warm 2
for ROUND in $(seq "$ROUNDS"); do
    for P in 1 "$PIPELINE"; do
        bench "get_p$P" "$CACHE_USERS" "$P" GET "bs:u:__rand_int__"
        bench "l1_p$P" "$CACHE_USERS" "$P" REC.GET "u:__rand_int__"
        config_set rec.l1-size 0
        warm 1
        bench "l2_p$P" "$CACHE_USERS" "$P" REC.GET "u:__rand_int__"
        config_set rec.l1-size "$L1_SIZE"
    done
done
ROUND=0

# --- 3. Monitoring on and off (issue 5) ----------------------------------------------------
# Cached (L1) REC.GET and REC.TRACK, rec.metrics-enabled yes/no alternating, in both orders; a GET
# row per round too, for REC.GET (L1, metrics off) / GET.
GROUP=monitoring
log "monitoring: re-warming users 0..$((CACHE_USERS - 1))"
cli REC.INVALIDATE ALL >/dev/null
warm 2
for ROUND in $(seq "$MON_ROUNDS"); do
    if [ $((ROUND % 2)) = 1 ]; then order="yes no"; else order="no yes"; fi
    METRICS=- bench mon_get_plain "$CACHE_USERS" 1 GET "bs:u:__rand_int__"
    for METRICS in $order; do
        config_set rec.metrics-enabled "$METRICS"
        bench "mon_get_$METRICS" "$CACHE_USERS" 1 REC.GET "u:__rand_int__"
        bench "mon_track_$METRICS" "$TRACK_RANGE" 1 REC.TRACK "u:__rand_int__" "i:__rand_int__" view
    done
done
config_set rec.metrics-enabled yes
ROUND=0 METRICS=yes
unset SECS

# --- 4. Zipf request mix over all users, default TTL (issue 3) ------------------------------
ZIPF_JSON="" ZIPF_CHECK_JSON=""
zipf_summary() {
    python3 -c "
import json, sys
d = json.loads(sys.argv[1]); w = d['whole']; t = d['last_third']; m = d['model_steady_state']
print(f\"    {w['requests_per_s']:,.0f} req/s, hit rate {w['hit_rate']:.3f} (last third {t['hit_rate']:.4f}), compute {w['compute_per_s']:,.0f}/s (last third {t['compute_per_s']:,.0f}/s); steady-state model: hit rate {m['hit_rate']:.4f}, {m['misses_per_s']:,.0f} misses/s\")
" "$1" >&2
}
if [ "$ZIPF_SECONDS" != 0 ]; then
    log "zipf: REC.INVALIDATE ALL, then ${ZIPF_SECONDS} s of REC.GET for Zipf($ZIPF_S) users of $USERS (rec.cache-ttl $CACHE_TTL)"
    cli REC.INVALIDATE ALL >/dev/null
    ZIPF_JSON=$(timeout $((ZIPF_SECONDS * 2 + 60)) python3 bench/recbench.py --port "$PORT" zipf \
        --users "$USERS" --s "$ZIPF_S" --seconds "$ZIPF_SECONDS" --interval 10) ||
        die "zipf client failed"
    zipf_summary "$ZIPF_JSON"
    if [ "$ZIPF_CHECK_TTL" != 0 ]; then
        # The run above is shorter than the default TTL; with a short TTL the same mix reaches its
        # steady state within the run, which checks the model the report uses for the default TTL.
        log "zipf check: rec.cache-ttl $ZIPF_CHECK_TTL, REC.INVALIDATE ALL, ${ZIPF_CHECK_SECONDS} s"
        config_set rec.cache-ttl "$ZIPF_CHECK_TTL"
        cli REC.INVALIDATE ALL >/dev/null
        ZIPF_CHECK_JSON=$(timeout $((ZIPF_CHECK_SECONDS * 2 + 60)) python3 bench/recbench.py \
            --port "$PORT" zipf --users "$USERS" --s "$ZIPF_S" --seconds "$ZIPF_CHECK_SECONDS" \
            --interval 5) || die "zipf client failed"
        config_set rec.cache-ttl "$CACHE_TTL"
        zipf_summary "$ZIPF_CHECK_JSON"
    fi
fi

T_END=$(date +%s)

# ---------------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
export RESULTS REDIS_VERSION MODULE_VERSION MODULE_SHA CLIENTS ITEMS CATEGORIES USERS EVENTS ZIPF \
    LOAD_SECONDS MEM_BEFORE MEM_AFTER RSS_BEFORE RSS_AFTER USER_KEYS INFO_REC SECONDS_PER_BENCH \
    FAST_SECONDS MAX_N MAX_N_PIPE PIPELINE CACHE_USERS L1_SIZE CACHE_TTL REPLY_JSON REPLY_BYTES \
    VALUE_SIZE GET_REPLY ZIPF_JSON ZIPF_CHECK_JSON ZIPF_S ZIPF_SECONDS ROUNDS MON_ROUNDS MAIN_ROUNDS
export RUN_SECONDS=$((T_END - T_START))
python3 bench/report.py "$OUT"
log "written to $OUT (run took $((T_END - T_START)) s)"
