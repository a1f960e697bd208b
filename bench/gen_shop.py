#!/usr/bin/env python3
"""Generate a synthetic shop for the RedisRec benchmark, as Redis protocol for `redis-cli --pipe`.

Standard library only. The output is deterministic for a given --seed and --end-ms.

    gen_shop.py items   # REC.ITEM.SET for every item
    gen_shop.py events  # REC.TRACK ... TS <ms>, in time order
    gen_shop.py strings # SET baseline keys, one per user, for the GET baseline

Ids are zero-padded to 12 digits (`u:000000001234`, `i:000000000042`) because that is what
redis-benchmark's `__rand_int__` placeholder expands to, so `-r N` hits ids 0..N-1 of this shop.

The shop: items in categories (uniform), item popularity Zipf(s) over a random permutation of the
items, users with log-normal activity, events grouped in sessions (a user looks at a few items,
half of them from the user's favourite categories, and sometimes clicks, carts or buys one of the
items seen in the session). Actions are mostly views.
"""

import argparse
import bisect
import itertools
import random
import sys
import time

ACTIONS = ("view", "click", "add_to_cart", "purchase")
ACTION_WEIGHTS = (0.85, 0.09, 0.04, 0.02)
DAY_MS = 86_400_000


def user_id(n):
    return "u:%012d" % n


def item_id(n):
    return "i:%012d" % n


def category_id(n):
    return "c%02d" % n


def resp(*args):
    """One command in RESP. Arguments are str (ASCII) or bytes."""
    out = ["*%d\r\n" % len(args)]
    for a in args:
        out.append("$%d\r\n%s\r\n" % (len(a), a))
    return "".join(out)


def inline(*args):
    return " ".join(args) + "\n"


class Shop:
    def __init__(self, a):
        self.a = a
        rnd = random.Random(a.seed)
        self.rnd = rnd
        # Item categories, uniform.
        self.item_cat = [rnd.randrange(a.categories) for _ in range(a.items)]
        # Popularity rank r (0 = most popular) -> item number, a random permutation.
        self.rank_item = list(range(a.items))
        rnd.shuffle(self.rank_item)
        weights = [1.0 / (r + 1) ** a.zipf for r in range(a.items)]
        self.global_cw = list(itertools.accumulate(weights))
        # Per category: its items in global popularity order, with the same Zipf weights by
        # global rank, so within-category picks keep the global popularity ordering.
        self.cat_items = [[] for _ in range(a.categories)]
        self.cat_cw = [[] for _ in range(a.categories)]
        for r, item in enumerate(self.rank_item):
            c = self.item_cat[item]
            self.cat_items[c].append(item)
            prev = self.cat_cw[c][-1] if self.cat_cw[c] else 0.0
            self.cat_cw[c].append(prev + weights[r])

    def pick_global(self, u):
        cw = self.global_cw
        return self.rank_item[bisect.bisect_left(cw, u * cw[-1])]

    def pick_in_category(self, c, u):
        cw = self.cat_cw[c]
        if not cw:
            return None
        i = bisect.bisect_left(cw, u * cw[-1])
        return self.cat_items[c][min(i, len(cw) - 1)]

    def items(self, fmt):
        rnd = random.Random(self.a.seed + 1)
        created0 = self.a.end_ms - 365 * DAY_MS
        for n in range(self.a.items):
            tags = ",".join(sorted({"t%02d" % rnd.randrange(100) for _ in range(rnd.randint(1, 3))}))
            price = "%d.%02d" % (rnd.randint(1, 499), rnd.randrange(100))
            yield fmt(
                "REC.ITEM.SET",
                item_id(n),
                "CATEGORY",
                category_id(self.item_cat[n]),
                "TAGS",
                tags,
                "CREATED",
                str(created0 + rnd.randrange(360 * DAY_MS)),
                "PROPS",
                '{"price":%s}' % price,
            )

    def strings(self, fmt):
        # A value about the size of a 10-item REC.GET reply.
        value = "x" * self.a.value_size
        for n in range(self.a.users):
            yield fmt("SET", "bs:" + user_id(n), value)

    def event_keys(self):
        """All events as packed ints (ts, user, item, action), sorted by time."""
        a, rnd = self.a, random.Random(self.a.seed + 2)
        users, cats = a.users, a.categories
        # Each user: activity weight (log-normal) and one or two favourite categories.
        activity = list(itertools.accumulate(rnd.lognormvariate(0.0, 0.8) for _ in range(users)))
        fav = [
            (rnd.randrange(cats), rnd.randrange(cats) if rnd.random() < 0.5 else None)
            for _ in range(users)
        ]
        action_cw = list(itertools.accumulate(ACTION_WEIGHTS))
        start = a.end_ms - a.days * DAY_MS
        span = a.days * DAY_MS - 3_600_000  # sessions end before end_ms
        ub, ib = users.bit_length(), a.items.bit_length()
        keys = []
        append = keys.append
        random_ = rnd.random
        remaining = a.events
        while remaining > 0:
            user = bisect.bisect_left(activity, random_() * activity[-1])
            user = min(user, users - 1)
            f1, f2 = fav[user]
            ts = start + int(random_() * span)
            length = min(remaining, 1 + int(rnd.expovariate(1 / 3.0)))
            seen = []
            for _ in range(length):
                ts += 2_000 + int(rnd.expovariate(1 / 40_000.0))
                act = bisect.bisect_left(action_cw, random_() * action_cw[-1]) if seen else 0
                act = min(act, 3)
                if act and random_() < 0.8:
                    item = seen[int(random_() * len(seen))]
                else:
                    r = random_()
                    if r < 0.5:
                        c = f1 if (f2 is None or r < 0.35) else f2
                        item = self.pick_in_category(c, random_())
                        if item is None:
                            item = self.pick_global(random_())
                    else:
                        item = self.pick_global(random_())
                    seen.append(item)
                append((((ts << ub) | user) << ib | item) << 2 | act)
            remaining -= length
        keys.sort()
        return keys, ub, ib

    def events(self, fmt, resp_fast):
        keys, ub, ib = self.event_keys()
        umask, imask = (1 << ub) - 1, (1 << ib) - 1
        if resp_fast:
            # Hand-rolled RESP for speed: user/item ids are fixed-width, TS is 13 digits.
            for k in keys:
                act = ACTIONS[k & 3]
                k >>= 2
                item = k & imask
                k >>= ib
                user = k & umask
                ts = str(k >> ub)
                yield (
                    "*6\r\n$9\r\nREC.TRACK\r\n$14\r\nu:%012d\r\n$14\r\ni:%012d\r\n$%d\r\n%s\r\n"
                    "$2\r\nTS\r\n$%d\r\n%s\r\n" % (user, item, len(act), act, len(ts), ts)
                )
        else:
            for k in keys:
                act = ACTIONS[k & 3]
                k >>= 2
                item = k & imask
                k >>= ib
                user = k & umask
                yield fmt("REC.TRACK", user_id(user), item_id(item), act, "TS", str(k >> ub))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("items", "events", "strings"))
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--categories", type=int, default=50)
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of item popularity")
    p.add_argument("--days", type=int, default=30, help="events span this many days before --end-ms")
    p.add_argument("--end-ms", type=int, default=None, help="latest event time (default: now, rounded to the hour)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--value-size", type=int, default=200, help="value size of the `strings` baseline keys")
    p.add_argument("--format", choices=("resp", "inline"), default="resp",
                   help="resp for redis-cli --pipe; inline (one command per line) for reading")
    a = p.parse_args()
    if a.end_ms is None:
        a.end_ms = int(time.time() // 3600 * 3600 * 1000)
    if a.items < 1 or a.users < 1 or a.categories < 1 or a.events < 0 or a.days < 1:
        p.error("sizes must be positive")
    if max(a.items, a.users) > 10**12:
        p.error("ids are 12 digits")
    if a.format == "inline" and a.what == "items":
        p.error("PROPS carry JSON quotes: use --format resp for items")

    shop = Shop(a)
    fmt = resp if a.format == "resp" else inline
    if a.what == "items":
        gen = shop.items(fmt)
    elif a.what == "strings":
        gen = shop.strings(fmt)
    else:
        gen = shop.events(fmt, a.format == "resp")

    out = sys.stdout
    buf = []
    try:
        for cmd in gen:
            buf.append(cmd)
            if len(buf) >= 8192:
                out.write("".join(buf))
                buf.clear()
        out.write("".join(buf))
        out.flush()
    except BrokenPipeError:
        sys.stderr.write("gen_shop.py: output closed early\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
