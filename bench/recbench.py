#!/usr/bin/env python3
"""Raw-socket helpers for the RedisRec benchmark (bench/run.sh). Standard library only.

    recbench.py warm      REC.GET every user 0..N-1, pipelined, PASSES times (fills L1 and L2)
    recbench.py replysize bytes of one REC.GET reply in RESP2, over a sample of users
    recbench.py zipf      REC.GET for Zipf-drawn users, pipelined, for a time or a request count;
                          requests/s, cache hit rate and compute calls/s from INFO rec deltas

Every subcommand prints one JSON object on stdout. Loopback only (--host defaults to 127.0.0.1).
Ids are `u:%012d`, as bench/gen_shop.py makes them.
"""

import argparse
import bisect
import itertools
import json
import random
import socket
import sys
import time

CACHE_FIELDS = ("rec_l1_hits", "rec_l2_hits", "rec_misses", "rec_early_refreshes")


def user_id(n):
    return "u:%012d" % n


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespError(Exception):
    pass


class Conn:
    """One pipelined RESP2 connection that parses replies just enough to delimit them."""

    def __init__(self, host, port, timeout=60.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.errors = []

    def _fill(self):
        if self.pos > 1 << 20:
            del self.buf[: self.pos]
            self.pos = 0
        chunk = self.sock.recv(1 << 18)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def _skip(self, pos):
        """End offset of the reply starting at pos, or -1 if the buffer does not hold all of it."""
        buf = self.buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return -1
        t = buf[pos]
        if t in b"+-:,_#(":
            if t == 45:  # '-'
                self.errors.append(bytes(buf[pos:end]))
            return end + 2
        n = int(buf[pos + 1 : end])
        if t in b"$=!":
            if n < 0:
                return end + 2
            stop = end + 2 + n + 2
            return stop if stop <= len(buf) else -1
        if t in b"*~>%|":
            if t in b"%|":
                n *= 2
            p = end + 2
            for _ in range(max(n, 0)):
                p = self._skip(p)
                if p < 0:
                    return -1
            return p
        raise RespError("unexpected reply type %r" % chr(t))

    def read_reply(self):
        """The raw bytes of the next reply."""
        while True:
            if self.pos < len(self.buf):
                end = self._skip(self.pos)
                if end >= 0:
                    raw = bytes(self.buf[self.pos : end])
                    self.pos = end
                    return raw
            self._fill()

    def read_replies(self, n):
        """Consumes n replies; returns the bytes they took."""
        total = 0
        for _ in range(n):
            while True:
                end = self._skip(self.pos) if self.pos < len(self.buf) else -1
                if end >= 0:
                    total += end - self.pos
                    self.pos = end
                    break
                self._fill()
        return total

    def call(self, *args):
        self.sock.sendall(encode(*args))
        raw = self.read_reply()
        if raw.startswith(b"-"):
            raise RespError(raw.decode(errors="replace").strip())
        return raw

    def info_fields(self, section, fields):
        raw = self.call("INFO", section)
        text = raw.split(b"\r\n", 1)[1].decode()
        got = {}
        for line in text.splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                got[k] = v
        missing = [f for f in fields if f not in got]
        if missing:
            raise RespError("INFO %s lacks %s" % (section, ", ".join(missing)))
        return {f: float(got[f]) for f in fields}


def rec_get(user, extra):
    return encode("REC.GET", user_id(user), *extra)


def cmd_warm(a, c):
    t0 = time.time()
    nbytes = 0
    for _ in range(a.passes):
        for start in range(0, a.users, a.pipeline):
            batch = range(start, min(start + a.pipeline, a.users))
            c.sock.sendall(b"".join(rec_get(u, a.args) for u in batch))
            nbytes += c.read_replies(len(batch))
    if c.errors:
        raise RespError("%d error replies, first: %r" % (len(c.errors), c.errors[0]))
    return {"users": a.users, "passes": a.passes, "seconds": round(time.time() - t0, 2),
            "mean_reply_bytes": nbytes / max(a.users * a.passes, 1)}


def cmd_replysize(a, c):
    rnd = random.Random(a.seed)
    users = [rnd.randrange(a.users) for _ in range(a.sample)]
    sizes = []
    for u in users:
        c.sock.sendall(rec_get(u, a.args))
        raw = c.read_reply()
        if raw.startswith(b"-"):
            raise RespError(raw.decode(errors="replace").strip())
        sizes.append(len(raw))
    sizes.sort()
    return {"sample": len(sizes), "min": sizes[0], "median": sizes[len(sizes) // 2],
            "max": sizes[-1], "mean": sum(sizes) / len(sizes)}


def zipf_model(rate, weights, ttl):
    """Steady-state L1+L2 hit rate if user i is asked at rate*p_i (Poisson) and each miss caches
    for ttl seconds with nothing evicted or invalidated: user i misses lambda_i/(1+lambda_i*ttl)/s."""
    total = sum(weights)
    misses = 0.0
    for w in weights:
        lam = rate * w / total
        misses += lam / (1.0 + lam * ttl)
    return {"hit_rate": 1.0 - misses / rate if rate else 0.0, "misses_per_s": misses}


def cmd_zipf(a, c):
    rnd = random.Random(a.seed)
    weights = [1.0 / (r + 1) ** a.s for r in range(a.users)]
    cw = list(itertools.accumulate(weights))
    # Popularity rank -> user id, a seeded permutation (rank 0 is not user 0).
    rank_user = list(range(a.users))
    rnd.shuffle(rank_user)
    cmds = [rec_get(u, a.args) for u in range(a.users)]
    top = cw[-1]
    rand = rnd.random

    def draw(n):
        return [cmds[rank_user[bisect.bisect_left(cw, rand() * top)]] for _ in range(n)]

    ttl = None
    if a.ttl is None:
        raw = c.call("CONFIG", "GET", "rec.cache-ttl").split(b"\r\n")
        ttl = float(raw[4]) if len(raw) > 4 else 300.0
    else:
        ttl = a.ttl

    deadline_s = a.seconds if a.seconds > 0 else float("inf")
    limit = a.requests if a.requests > 0 else float("inf")
    windows = []
    first = prev = c.info_fields("rec_cache", CACHE_FIELDS)
    t_start = t_prev = time.time()
    sent = sent_prev = 0
    next_mark = t_start + a.interval
    batch = draw(a.pipeline)
    while True:
        c.sock.sendall(b"".join(batch))
        n = len(batch)
        batch = draw(a.pipeline)  # draw the next batch while the server works
        c.read_replies(n)
        sent += n
        now = time.time()
        done = sent >= limit or now - t_start >= deadline_s
        if now >= next_mark or done:
            cur = c.info_fields("rec_cache", CACHE_FIELDS)
            windows.append(window(prev, cur, sent - sent_prev, now - t_prev, now - t_start))
            prev, t_prev, sent_prev = cur, now, sent
            next_mark = now + a.interval
        if done:
            break
    if c.errors:
        raise RespError("%d error replies, first: %r" % (len(c.errors), c.errors[0]))
    elapsed = t_prev - t_start
    whole = window(first, prev, sent, elapsed, elapsed)
    # The last third of the windows: closer to steady state than the whole run.
    tail_sum = merge(windows[-max(1, len(windows) // 3):])
    return {
        "users": a.users, "s": a.s, "pipeline": a.pipeline, "ttl": ttl, "requests": sent,
        "seconds": round(elapsed, 2), "whole": whole, "last_third": tail_sum, "windows": windows,
        "model_steady_state": zipf_model(whole["requests_per_s"], weights, ttl),
        "model_last_third": zipf_model(tail_sum["requests_per_s"], weights, ttl),
    }


def window(a, b, n, seconds, at):
    d = {k: b[k] - a[k] for k in CACHE_FIELDS}
    hits = d["rec_l1_hits"] + d["rec_l2_hits"]
    computes = d["rec_misses"] + d["rec_early_refreshes"]
    served = hits + computes
    seconds = max(seconds, 1e-9)
    return {
        "at": round(at, 1), "seconds": round(seconds, 2), "requests": n,
        "requests_per_s": n / seconds,
        "l1_hits": int(d["rec_l1_hits"]), "l2_hits": int(d["rec_l2_hits"]),
        "misses": int(d["rec_misses"]), "early_refreshes": int(d["rec_early_refreshes"]),
        "hit_rate": hits / served if served else 0.0,
        "l1_share": d["rec_l1_hits"] / served if served else 0.0,
        "compute_per_s": computes / seconds,
        "misses_per_s": d["rec_misses"] / seconds,
    }


def merge(ws):
    if not ws:
        return None
    keys = ("requests", "l1_hits", "l2_hits", "misses", "early_refreshes")
    t = {k: sum(w[k] for w in ws) for k in keys}
    sec = sum(w["seconds"] for w in ws)
    hits = t["l1_hits"] + t["l2_hits"]
    computes = t["misses"] + t["early_refreshes"]
    served = hits + computes
    t.update(seconds=round(sec, 2), requests_per_s=t["requests"] / sec,
             hit_rate=hits / served if served else 0.0,
             l1_share=t["l1_hits"] / served if served else 0.0,
             compute_per_s=computes / sec, misses_per_s=t["misses"] / sec)
    return t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("warm", "replysize", "zipf"))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6390)
    p.add_argument("--users", type=int, default=10_000, help="users 0..N-1")
    p.add_argument("--pipeline", type=int, default=32)
    p.add_argument("--passes", type=int, default=2, help="warm: passes over the users")
    p.add_argument("--sample", type=int, default=200, help="replysize: users sampled")
    p.add_argument("--s", type=float, default=1.1, help="zipf: exponent")
    p.add_argument("--seconds", type=float, default=60.0, help="zipf: run time (0: no limit)")
    p.add_argument("--requests", type=int, default=0, help="zipf: request count (0: no limit)")
    p.add_argument("--interval", type=float, default=10.0, help="zipf: INFO sampling period, s")
    p.add_argument("--ttl", type=float, default=None, help="zipf model: TTL (default: CONFIG GET)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("args", nargs="*", help="extra REC.GET arguments")
    a = p.parse_args()
    if a.what == "zipf" and a.seconds <= 0 and a.requests <= 0:
        p.error("zipf needs --seconds or --requests")
    c = Conn(a.host, a.port)
    fn = {"warm": cmd_warm, "replysize": cmd_replysize, "zipf": cmd_zipf}[a.what]
    try:
        print(json.dumps(fn(a, c)))
    except (RespError, ConnectionError, OSError) as e:
        sys.stderr.write("recbench.py %s: %s\n" % (a.what, e))
        sys.exit(1)


if __name__ == "__main__":
    main()
