//! N concurrent clients sending events for shared users lose none: counters match exactly.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread;

use common::*;

const CLIENTS: usize = 8;
const EVENTS_PER_CLIENT: usize = 2_500;
const USERS: usize = 20;
const ITEMS: usize = 50;
const TRACKED: [&str; 6] = [
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "dislike",
    "rating",
];

/// The events-per-action counters of `INFO rec`: lines like `events_view:12` / `view_events:12`,
/// or one line `events:view=12,click=3,...`.
fn info_event_counters(text: &str) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        if !k.contains("event") {
            continue;
        }
        if v.contains('=') {
            for part in v.split(',') {
                if let Some((a, n)) = part.split_once('=') {
                    if let (true, Ok(n)) = (TRACKED.contains(&a), n.parse()) {
                        out.insert(a.to_string(), n);
                    }
                }
            }
            continue;
        }
        for a in TRACKED {
            let named = k == format!("events_{a}")
                || k == format!("rec_events_{a}")
                || k == format!("{a}_events")
                || k == format!("events_{a}_total");
            if let (true, Ok(n)) = (named, v.parse()) {
                out.insert(a.to_string(), n);
            }
        }
    }
    out
}

#[test]
fn concurrent_events_are_all_counted() {
    let srv = Arc::new(Server::start());
    let mut con = srv.connection();
    let base = info_event_counters(&as_str(&call(&mut con, &["INFO", "rec"])));

    let handles: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let srv = Arc::clone(&srv);
            thread::spawn(move || {
                let mut con = srv.connection();
                let mut rng = Rng::new(1000 + t as u64);
                // (user, action) -> count, item -> count
                let mut per_user: HashMap<(usize, &'static str), i64> = HashMap::new();
                let mut per_item: HashMap<usize, i64> = HashMap::new();
                let mut batch = Vec::new();
                for n in 0..EVENTS_PER_CLIENT {
                    let u = rng.index(USERS);
                    let i = rng.index(ITEMS);
                    let a = TRACKED[rng.index(TRACKED.len())];
                    let mut c = args(&["REC.TRACK", &format!("user{u}"), &format!("item{i}"), a]);
                    if a == "rating" {
                        // 4 or 5: a plain rating (1 and 2 also count as dislikes).
                        c.extend(args(&["VALUE", &rng.range(4, 5).to_string()]));
                    }
                    *per_user.entry((u, a)).or_default() += 1;
                    *per_item.entry(i).or_default() += 1;
                    batch.push(c);
                    // Mix pipelined batches and single round trips.
                    if batch.len() == 50 || n % 7 == 0 || n + 1 == EVENTS_PER_CLIENT {
                        let replies = call_pipelined(&mut con, &batch);
                        for (c, r) in batch.iter().zip(&replies) {
                            assert_ok_reply(c, r);
                        }
                        batch.clear();
                    }
                }
                (per_user, per_item)
            })
        })
        .collect();

    let mut per_user: HashMap<(usize, &'static str), i64> = HashMap::new();
    let mut per_item: HashMap<usize, i64> = HashMap::new();
    for h in handles {
        let (u, i) = h.join().unwrap();
        for (k, v) in u {
            *per_user.entry(k).or_default() += v;
        }
        for (k, v) in i {
            *per_item.entry(k).or_default() += v;
        }
    }
    let total = (CLIENTS * EVENTS_PER_CLIENT) as i64;
    assert_eq!(per_user.values().sum::<i64>(), total);

    let mut per_action: HashMap<&str, i64> = HashMap::new();
    for u in 0..USERS {
        let v = call(&mut con, &["REC.USER.GET", &format!("user{u}")]);
        let actions: HashMap<String, i64> = map_entries(&field(&v, "actions"))
            .into_iter()
            .map(|(k, v)| (k, as_i64(&v)))
            .collect();
        let mut events = 0;
        for a in TRACKED {
            let want = per_user.get(&(u, a)).copied().unwrap_or(0);
            let got = actions.get(a).copied().unwrap_or(0);
            assert_eq!(got, want, "user{u} {a}: {v:?}");
            events += want;
            *per_action.entry(a).or_default() += want;
        }
        assert_eq!(as_i64(&field(&v, "events")), events, "user{u} events");
    }
    for i in 0..ITEMS {
        let v = call(&mut con, &["REC.ITEM.GET", &format!("item{i}")]);
        let want = per_item.get(&i).copied().unwrap_or(0);
        assert_eq!(as_i64(&field(&v, "events")), want, "item{i} events");
    }

    let text = as_str(&call(&mut con, &["INFO", "rec"]));
    let counters = info_event_counters(&text);
    for a in TRACKED {
        let got = counters.get(a).copied().unwrap_or_else(|| {
            panic!("no events counter for {a} in INFO rec:\n{text}");
        }) - base.get(a).copied().unwrap_or(0);
        assert_eq!(got, per_action[a], "INFO rec events for {a}");
    }
}

#[track_caller]
fn assert_ok_reply(c: &[Vec<u8>], r: &redis::Value) {
    assert!(
        matches!(r, redis::Value::Okay) || matches!(r, redis::Value::SimpleString(s) if s == "OK"),
        "{} -> {r:?}",
        show_cmd(c)
    );
}
