#!/usr/bin/env python3
"""Writes the bench/run.sh report (Markdown) from the rows it collected; run by bench/run.sh.

Input: the environment bench/run.sh exports (RESULTS is a TSV of redis-benchmark rows,
ZIPF_JSON the summary of bench/recbench.py zipf). Output: the report, to argv[1] and stdout.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

e = os.environ
COLS = ("group", "round", "metrics", "label", "cmd", "pipe", "n", "rps", "p50", "p99", "errs",
        "l1", "l2", "miss", "early")
rows = []
for line in open(e["RESULTS"]):
    r = dict(zip(COLS, line.rstrip("\n").split("\t")))
    for k in ("round", "pipe", "n", "errs", "l1", "l2", "miss", "early"):
        r[k] = int(r[k])
    r["rps"] = float(r["rps"])
    rows.append(r)


def find(label, group=None, round_=None):
    return [r for r in rows if r["label"] == label and (group is None or r["group"] == group)
            and (round_ is None or r["round"] == round_)]


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
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src"],
                               capture_output=True, text=True).stdout.strip()
        return r + ("+uncommitted src changes" if dirty else "")
    except Exception:
        return "unknown"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}"


def ratio(a, b):
    return a["rps"] / b["rps"] if a and b and b["rps"] else None


def source(r):
    """Where REC.GET replies came from during the row, from INFO rec_cache deltas."""
    served = r["l1"] + r["l2"] + r["miss"] + r["early"]
    if not r["cmd"].startswith("REC.GET") or served == 0:
        return ""
    parts = [(r["l1"], "L1"), (r["l2"], "L2"), (r["miss"] + r["early"], "computed")]
    return ", ".join(f"{100 * v / served:.1f} % {name}" for v, name in parts if v)


def row_line(r, note=""):
    p = f"-P {r['pipe']}" if r["pipe"] > 1 else "1"
    src = source(r)
    note = "; ".join(x for x in (note, src) if x)
    return (f"| `{r['cmd']}` | {p} | {r['n']:,} | {r['rps']:,.0f} | {r['p50']} | {r['p99']} "
            f"| {r['errs']} | {note} |")


HEAD = ["| command | pipeline | requests | requests/s | p50 ms | p99 ms | errors | note |",
        "|---|---:|---:|---:|---:|---:|---:|---|"]

events, users = int(e["EVENTS"]), int(e["USERS"])
mb, ma = int(e["MEM_BEFORE"]), int(e["MEM_AFTER"])
rb, ra = int(e["RSS_BEFORE"]), int(e["RSS_AFTER"])
value_size, reply_bytes = int(e["VALUE_SIZE"]), int(e["REPLY_BYTES"])
pipeline, cache_users = int(e["PIPELINE"]), int(e["CACHE_USERS"])
L = []
L.append(f"# RedisRec benchmark — {time.strftime('%Y-%m-%d %H:%M %Z')}")
L.append("")
L.append(f"Redis {e['REDIS_VERSION']}, module `rec` version {e['MODULE_VERSION']} (git {rev()}, "
         f".so sha256 {e['MODULE_SHA']}…), {cpu()}, {os.cpu_count()} CPUs; redis-benchmark, the "
         f"Python clients and redis-server share the host (loopback), `-c {e['CLIENTS']}`. "
         f"Whole run: {int(e['RUN_SECONDS'])} s.")
L.append("")
L.append(f"Shop: {int(e['ITEMS']):,} items in {e['CATEGORIES']} categories, {users:,} users, "
         f"{events:,} events (item popularity Zipf s={e['ZIPF']}, mostly views), "
         f"loaded through `redis-cli --pipe` in {e['LOAD_SECONDS']} s "
         f"({events / max(float(e['LOAD_SECONDS']), 1e-9):,.0f} events/s).")
L.append("")

# --- headline ratios -----------------------------------------------------------------------
cache_ratios = {}
for p in (1, pipeline):
    for tier in ("l1", "l2"):
        per_round = []
        for rnd in sorted({r["round"] for r in rows if r["group"] == "cache"}):
            a = find(f"{tier}_p{p}", "cache", rnd)
            b = find(f"get_p{p}", "cache", rnd)
            if a and b:
                per_round.append(ratio(a[0], b[0]))
        cache_ratios[(tier, p)] = per_round

# REC.GET from L1 against the same round's GET, in the monitoring rounds (metrics off and on).
mon_vs_get = {}
for m in ("no", "yes"):
    per_round = []
    for rnd in sorted({r["round"] for r in rows if r["group"] == "monitoring"}):
        a = find(f"mon_get_{m}", "monitoring", rnd)
        b = find("mon_get_plain", "monitoring", rnd)
        if a and b:
            per_round.append(ratio(a[0], b[0]))
    mon_vs_get[m] = per_round

mon = {}
for cmd in ("get", "track"):
    per_round = []
    for rnd in sorted({r["round"] for r in rows if r["group"] == "monitoring"}):
        on = find(f"mon_{cmd}_yes", "monitoring", rnd)
        off = find(f"mon_{cmd}_no", "monitoring", rnd)
        if on and off:
            per_round.append((on[0]["rps"], off[0]["rps"], on[0]["rps"] / off[0]["rps"],
                              float(on[0]["p50"]) / max(float(off[0]["p50"]), 1e-9)))
    mon[cmd] = per_round


def paired(a, b, group):
    """requests/s of row a over row b of the same round, per round."""
    out = []
    for rnd in sorted({r["round"] for r in rows if r["group"] == group}):
        x, y = find(a, group, rnd), find(b, group, rnd)
        if x and y:
            out.append(ratio(x[0], y[0]))
    return out


def med(xs):
    return statistics.median(xs) if xs else None


def rounds_note(xs):
    return ", ".join(f"{x:.2f}" for x in xs)


L.append("## Ratios")
L.append("")
L.append("| ratio (requests/s) | value | per round | aim |")
L.append("|---|---:|---|---|")
for a, b, name, aim in (("rec_track", "hincrby", "REC.TRACK / HINCRBY", "≥ 0.5"),
                        ("rec_get", "get", "REC.GET NOCACHE / GET", "≥ 0.3")):
    xs = paired(a, b, "main")
    L.append(f"| {name} | {fmt_ratio(med(xs))} | {rounds_note(xs)} | {aim} |")
for tier, name in (("l1", "L1 hit"), ("l2", "L2 hit (L1 off)")):
    for p in (1, pipeline):
        xs = cache_ratios[(tier, p)]
        pl = "no pipelining" if p == 1 else f"-P {p}"
        aim = "≥ 0.8" if tier == "l1" else ""
        L.append(f"| REC.GET {name} / GET, {pl} | {fmt_ratio(med(xs))} | {rounds_note(xs)} | {aim} |")
for m, name in (("yes", "metrics on"), ("no", "metrics off")):
    xs = mon_vs_get[m]
    L.append(f"| REC.GET L1 hit / GET, no pipelining, {name} (monitoring rounds) | {fmt_ratio(med(xs))} "
             f"| {rounds_note(xs)} | ≥ 0.8 |")
for cmd, name in (("get", "REC.GET (L1 hit)"), ("track", "REC.TRACK")):
    xs = [x[2] for x in mon[cmd]]
    m = med(xs)
    cost = "n/a" if m is None else f"{100 * (1 - m):+.1f} %"
    L.append(f"| {name}, metrics on / off | {fmt_ratio(m)} (cost {cost}) | {rounds_note(xs)} | cost < 5 % |")
for cmd, name in (("get", "REC.GET (L1 hit)"), ("track", "REC.TRACK")):
    xs = [x[3] for x in mon[cmd]]
    L.append(f"| {name}, p50 latency on / off (secondary) | {fmt_ratio(med(xs))} | {rounds_note(xs)} | |")
L.append("")
L.append(f"Medians over rounds; each round of section 1 measures GET, REC.GET NOCACHE, HINCRBY "
         f"and REC.TRACK back to back (rounds: {e['MAIN_ROUNDS']}), each cache round measures GET, the L1 row and the L2 row back to back "
         f"(rounds: {e['ROUNDS']}), each monitoring round measures both settings back to back "
         f"(rounds: {e['MON_ROUNDS']}, order alternating). Cost of monitoring = 1 − on/off; negative "
         f"means the metrics-on rows happened to be faster, i.e. the cost is below the noise. "
         f"The p50 latency ratio (redis-benchmark's median latency at 50 clients, on over off) is "
         f"shown because it moves less than requests/s when other processes steal the CPUs.")
L.append("")

# --- Zipf ----------------------------------------------------------------------------------
zj = e.get("ZIPF_JSON", "").strip()
if zj:
    z = json.loads(zj)
    w, t, m = z["whole"], z["last_third"], z["model_steady_state"]
    L.append("## Cache under a Zipf request mix")
    L.append("")
    L.append(f"`REC.GET <user>` (COUNT 10) for users drawn Zipf(s={z['s']}) over {z['users']:,} users "
             f"(popularity rank → user id by a seeded permutation), one connection pipelined "
             f"{z['pipeline']} deep (bench/recbench.py, pure Python: the client bounds the rate), "
             f"{z['seconds']:.0f} s from a cold cache (`REC.INVALIDATE ALL` first), "
             f"rec.cache-ttl {e['CACHE_TTL']} s (default), rec.l1-size {e['L1_SIZE']}. Counts are "
             f"`INFO rec_cache` deltas; compute calls = rec_misses + rec_early_refreshes.")
    L.append("")
    L.append("| span | requests/s | hit rate | L1 share | compute calls/s | misses/s | early refreshes |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")

    def zrow(name, x):
        return (f"| {name} | {x['requests_per_s']:,.0f} | {x['hit_rate']:.3f} | {x['l1_share']:.3f} "
                f"| {x['compute_per_s']:,.0f} | {x['misses_per_s']:,.0f} | {x['early_refreshes']:,} |")

    L.append(zrow(f"whole run ({w['seconds']:.0f} s)", w))
    if t:
        L.append(zrow(f"last third ({t['seconds']:.0f} s)", t))
    for x in z["windows"]:
        L.append(zrow(f"window to {x['at']:.0f} s", x))
    L.append(f"| **steady-state model** at {w['requests_per_s']:,.0f} req/s, TTL {z['ttl']:.0f} s "
             f"| | **{m['hit_rate']:.4f}** | | **{m['misses_per_s']:,.0f}** | | |")
    zc = e.get("ZIPF_CHECK_JSON", "").strip()
    if zc:
        c = json.loads(zc)
        ct, cm = c["last_third"], c["model_last_third"]
        L.append(zrow(f"check, TTL {c['ttl']:.0f} s: measured, last third of {c['seconds']:.0f} s", ct))
        L.append(f"| check, TTL {c['ttl']:.0f} s: model at {ct['requests_per_s']:,.0f} req/s | "
                 f"| {cm['hit_rate']:.4f} | | {cm['misses_per_s']:,.0f} | | |")
    L.append("")
    L.append(f"The run is shorter than the TTL, so nothing expires in it: it shows the cache filling "
             f"from cold, and its late windows (first requests of rarely asked users only) understate "
             f"the steady-state compute rate. The model line is that steady state at the measured "
             f"rate: user i, asked at rate λᵢ (Poisson), is computed λᵢ / (1 + λᵢ·TTL) times a second "
             f"(once per TTL period while asked), nothing evicted or invalidated; L2 has no size bound "
             f"without maxmemory, so L1's size changes the L1 share, not the hit rate. The check rows "
             f"run the same mix with a short TTL, long enough to reach its steady state, against the "
             f"same model.")
    L.append("")

# --- all rows ----------------------------------------------------------------------------
L.append("## All rows")
L.append("")
notes = {
    "get": f"baseline: {value_size}-byte strings (reply {int(e['GET_REPLY'])} B, as a cached REC.GET)",
    "rec_get": "uncached (NOCACHE), COUNT 10",
    "hincrby": "baseline: counter in a hash",
    "rec_track": "no TS: server clock",
}
L.append(f"### REC.* against plain Redis (up to {int(e['MAX_N']):,} requests or ~{e['SECONDS_PER_BENCH']} s per row)")
L.append("")
L.append("| round | " + HEAD[0][2:])
L.append("|---:|" + HEAD[1][1:])
for r in rows:
    if r["group"] == "main":
        rnd = r["round"] or "–"
        L.append(f"| {rnd} " + row_line(r, notes.get(r["label"], "") if r["round"] <= 1 else ""))
L.append("")
L.append(f"### Cache rows (users 0..{cache_users - 1}, which fit in L1; up to ~{e['FAST_SECONDS']} s, "
         f"{int(e['MAX_N']):,} requests unpipelined or {int(e['MAX_N_PIPE']):,} pipelined per row)")
L.append("")
L.append(f"A cached `REC.GET <user>` reply (COUNT 10, RESP2) is {reply_bytes} bytes "
         f"(sample: {e['REPLY_JSON']}); the GET baseline strings are {value_size} bytes, a "
         f"{int(e['GET_REPLY'])}-byte reply. L2 rows run with `CONFIG SET rec.l1-size 0`, "
         f"restored to {e['L1_SIZE']} after each.")
L.append("")
L.append("| round | " + HEAD[0][2:])
L.append("|---:|" + HEAD[1][1:])
for r in rows:
    if r["group"] == "cache":
        L.append(f"| {r['round']} " + row_line(r))
L.append("")
L.append(f"### Monitoring rows (`rec.metrics-enabled`; REC.GET of users 0..{cache_users - 1} from L1)")
L.append("")
L.append("| round | metrics | " + HEAD[0][2:])
L.append("|---:|---|" + HEAD[1][1:])
for r in rows:
    if r["group"] == "monitoring":
        L.append(f"| {r['round']} | {r['metrics']} " + row_line(r))
L.append("")

# --- memory --------------------------------------------------------------------------------
L.append("## Memory")
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
