//! Recommendations on a scripted shop: REC.GET / REC.GET_RO / REC.SIMILAR / REC.POPULAR.
//!
//! The shop: A (c1) and B (c2) are bought together by 30 users (3 of them also buy C, in c4;
//! each also viewed one c5 item first). Filler items p<c>_<i> in categories c1..c5 get distinct,
//! known popularities from single large-VALUE views (c3 the most popular), and bare items
//! n0..n4 (never set, no category) too. Popularity order, from the numbers below:
//! p3_0..p3_9 (1000..910), p4_0..p4_4 (500..460), p5_0..p5_4 (≈406..366), p1_0..p1_4 (350..310),
//! A (≈250-270), B (240), p2_0..p2_4 (200..160), n0..n4 (150..110), C (24).

mod common;

use std::collections::HashMap;

use common::*;
use redis::{Connection, Value};

struct Shop {
    srv: Server,
    con: Connection,
    /// item -> category (None for bare items)
    cat: HashMap<String, Option<String>>,
}

const FILLERS: &[(&str, i64, usize)] = &[
    ("c3", 1000, 10),
    ("c4", 500, 5),
    ("c5", 400, 5),
    ("c1", 350, 5),
    ("c2", 200, 5),
];

fn shop() -> Shop {
    let srv = Server::start();
    let mut con = srv.connection();
    let mut cat = HashMap::new();
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    let t0 = now_ms() - 3_600_000;
    let mut seq = 0i64;
    let mut track = |cmds: &mut Vec<Vec<Vec<u8>>>, u: &str, i: &str, a: &str, extra: &[&str]| {
        seq += 1;
        let ts = (t0 + seq).to_string();
        let mut c = args(&["REC.TRACK", u, i, a]);
        c.extend(args(extra));
        c.extend(args(&["TS", &ts]));
        cmds.push(c);
    };
    for (id, c) in [("A", "c1"), ("B", "c2"), ("C", "c4")] {
        cmds.push(args(&["REC.ITEM.SET", id, "CATEGORY", c]));
        cat.insert(id.to_string(), Some(c.to_string()));
    }
    for &(c, base, n) in FILLERS {
        for i in 0..n {
            let id = format!("p{}_{i}", &c[1..]);
            cmds.push(args(&["REC.ITEM.SET", &id, "CATEGORY", c]));
            cat.insert(id.clone(), Some(c.to_string()));
            let v = (base - 10 * i as i64).to_string();
            track(&mut cmds, &format!("fan_{id}"), &id, "view", &["VALUE", &v]);
        }
    }
    for i in 0..5 {
        let id = format!("n{i}");
        cat.insert(id.clone(), None);
        let v = (150 - 10 * i).to_string();
        track(&mut cmds, &format!("fan_{id}"), &id, "view", &["VALUE", &v]);
    }
    for k in 0..30 {
        let u = format!("buyer_{k}");
        track(&mut cmds, &u, &format!("p5_{}", k % 5), "view", &[]);
        track(&mut cmds, &u, "A", "purchase", &[]);
        track(&mut cmds, &u, "B", "purchase", &[]);
        if k < 3 {
            track(&mut cmds, &u, "C", "purchase", &[]);
        }
    }
    // Users the tests look at.
    track(&mut cmds, "fresh", "A", "purchase", &[]);
    track(&mut cmds, "dis", "A", "purchase", &[]);
    track(&mut cmds, "dis", "B", "dislike", &[]);
    track(&mut cmds, "rat", "A", "purchase", &[]);
    track(&mut cmds, "rat", "B", "rating", &["VALUE", "1"]);
    track(&mut cmds, "cold_dis", "p3_0", "dislike", &[]);
    cmds.push(args(&["REC.USER.SET", "featured", "age", "40"]));
    run_all(&mut con, &cmds);
    Shop { srv, con, cat }
}

impl Shop {
    fn get(&mut self, a: &[&str]) -> Value {
        let mut c = vec!["REC.GET"];
        c.extend(a);
        let r = call(&mut self.con, &c);
        assert!(!is_err(&r), "{c:?} -> {r:?}");
        r
    }

    fn get_ids(&mut self, a: &[&str]) -> Vec<String> {
        rec_ids(&self.get(a))
    }

    fn popular(&mut self, a: &[&str]) -> Vec<String> {
        let mut c = vec!["REC.POPULAR"];
        c.extend(a);
        ids(&call(&mut self.con, &c))
    }

    fn similar(&mut self, a: &[&str]) -> Vec<String> {
        let mut c = vec!["REC.SIMILAR"];
        c.extend(a);
        ids(&call(&mut self.con, &c))
    }

    fn category(&self, id: &str) -> Option<String> {
        self.cat
            .get(id)
            .unwrap_or_else(|| panic!("unknown item {id}"))
            .clone()
    }

    /// Asserts no category appears more than `cap` times (0 = no limit).
    #[track_caller]
    fn assert_cap(&self, list: &[String], cap: usize) {
        if cap == 0 {
            return;
        }
        let mut n: HashMap<String, usize> = HashMap::new();
        for id in list {
            if let Some(c) = self.category(id) {
                *n.entry(c).or_default() += 1;
            }
        }
        for (c, k) in n {
            assert!(k <= cap, "{k} items of {c} (cap {cap}) in {list:?}");
        }
    }

    /// The popularity list, with at most `cap` per category, minus `skip`, first `count`.
    fn capped_popular(&mut self, cap: usize, skip: &[&str], count: usize) -> Vec<String> {
        let all = self.popular(&["COUNT", "100"]);
        let mut n: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for id in all {
            if skip.contains(&id.as_str()) {
                continue;
            }
            if let Some(c) = self.category(&id) {
                let k = n.entry(c).or_default();
                if cap > 0 && *k >= cap {
                    continue;
                }
                *k += 1;
            }
            out.push(id);
            if out.len() == count {
                break;
            }
        }
        out
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn popularity_order() {
    let mut s = shop();
    let top10: Vec<String> = (0..10).map(|i| format!("p3_{i}")).collect();
    assert_eq!(s.popular(&[]), top10, "REC.POPULAR defaults to COUNT 10");
    let all = s.popular(&["COUNT", "100"]);
    assert_eq!(all.len(), s.cat.len(), "every item has popularity: {all:?}");
    let pos = |id: &str| all.iter().position(|x| x == id).unwrap();
    assert!(pos("p5_2") < pos("p1_0") && pos("p1_0") < pos("A") && pos("A") < pos("B"));
    assert!(pos("B") < pos("p2_0") && pos("p2_4") < pos("n0") && pos("n4") < pos("C"));

    let scored_all = scored(&call(
        &mut s.con,
        &["REC.POPULAR", "COUNT", "100", "WITHSCORES"],
    ));
    assert_eq!(
        scored_all.iter().map(|x| x.0.clone()).collect::<Vec<_>>(),
        all
    );
    for w in scored_all.windows(2) {
        assert!(w[0].1 >= w[1].1, "scores not ordered: {w:?}");
    }
    assert!(scored_all.iter().all(|x| x.1 > 0.0));
    // Scores are the decayed popularity REC.ITEM.GET reports.
    let p = as_f64(&field(
        &call(&mut s.con, &["REC.ITEM.GET", "p3_0"]),
        "popularity",
    ));
    assert!(
        (p - scored_all[0].1).abs() <= 1e-9 * p,
        "{p} vs {:?}",
        scored_all[0]
    );
    assert!(p > 990.0 && p <= 1000.0, "p3_0 popularity {p}");

    assert_eq!(
        s.popular(&["COUNT", "10", "CATEGORY", "c4"]),
        strs(&["p4_0", "p4_1", "p4_2", "p4_3", "p4_4", "C"])
    );
    assert_eq!(
        s.popular(&["CATEGORY", "c3", "COUNT", "3"]),
        strs(&["p3_0", "p3_1", "p3_2"])
    );
    assert!(s.popular(&["CATEGORY", "nosuch"]).is_empty());
    assert_eq!(s.popular(&["COUNT", "1"]), strs(&["p3_0"]));
    for bad in ["0", "101", "-1", "abc", "", "1.5", "99999999999999999999"] {
        assert_err(&call(&mut s.con, &["REC.POPULAR", "COUNT", bad]), "");
    }
    assert_err(
        &call(&mut s.con, &["REC.POPULAR", "COUNT", "1", "COUNT", "2"]),
        "",
    );
    assert_err(&call(&mut s.con, &["REC.POPULAR", "BOGUS"]), "");
    assert_eq!(s.popular(&["COUNT", "100"]).len(), all.len());
}

#[test]
fn similar_items() {
    let mut s = shop();
    // Negative events add no co-occurrence and no popularity below zero.
    for u in ["neg1", "neg2", "neg3"] {
        assert_ok(&call(&mut s.con, &["REC.TRACK", u, "A", "purchase"]));
        assert_ok(&call(&mut s.con, &["REC.TRACK", u, "Z", "dislike"]));
        assert_ok(&call(
            &mut s.con,
            &["REC.TRACK", u, "Y", "rating", "VALUE", "1"],
        ));
    }
    for neg in ["Z", "Y"] {
        let z = call(&mut s.con, &["REC.ITEM.GET", neg]);
        assert_eq!(as_i64(&field(&z, "events")), 3);
        let p = as_f64(&field(&z, "popularity"));
        assert!(
            p == 0.0,
            "{neg} has popularity {p} from negative events only"
        );
        assert!(s.similar(&[neg]).is_empty(), "{neg} has neighbours");
        assert!(!s.similar(&["A", "COUNT", "100"]).contains(&neg.to_string()));
        assert!(!s.popular(&["COUNT", "100"]).contains(&neg.to_string()));
    }
    let sim = s.similar(&["A"]);
    assert_eq!(
        sim.first().map(String::as_str),
        Some("B"),
        "REC.SIMILAR A: {sim:?}"
    );
    assert!(sim.contains(&"C".to_string()), "{sim:?}");
    assert!(
        !sim.contains(&"A".to_string()),
        "an item is not similar to itself: {sim:?}"
    );
    assert!(
        sim.iter().all(|x| !x.starts_with("p3_")),
        "never co-occurring items are not similar: {sim:?}"
    );
    assert_eq!(s.similar(&["B"]).first().map(String::as_str), Some("A"));
    assert_eq!(s.similar(&["A", "COUNT", "1"]), strs(&["B"]));
    assert!(s.similar(&["unknown-item"]).is_empty());
    assert!(s.similar(&["p3_0"]).is_empty(), "no co-occurrence for p3_0");

    let sc = scored(&call(&mut s.con, &["REC.SIMILAR", "A", "WITHSCORES"]));
    assert_eq!(sc.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), sim);
    for w in sc.windows(2) {
        assert!(w[0].1 >= w[1].1, "scores not ordered: {w:?}");
    }
    assert!(sc.iter().all(|x| x.1 > 0.0 && x.1.is_finite()));
    for bad in ["0", "101", "-3", "x"] {
        assert_err(&call(&mut s.con, &["REC.SIMILAR", "A", "COUNT", bad]), "");
    }
    assert_err(&call(&mut s.con, &["REC.SIMILAR", "A", "NOPE"]), "");
    assert_arity_err(&call(&mut s.con, &["REC.SIMILAR"]), "rec.similar");
}

#[test]
fn personalized() {
    let mut s = shop();
    let r = s.get(&["fresh", "WITHSCORES", "WITHREASONS"]);
    assert_eq!(
        map_keys(&r),
        ["items", "cached", "source", "model", "rec_id"]
    );
    assert_eq!(as_i64(&field(&r, "cached")), 0);
    assert_eq!(as_str(&field(&r, "source")), "computed");
    assert_eq!(as_str(&field(&r, "model")), "default");
    let rec_id = as_str(&field(&r, "rec_id"));
    let parts: Vec<&str> = rec_id.split(':').collect();
    assert!(
        parts.len() == 3
            && parts[0] == "r1"
            && parts[1].parse::<i64>().is_ok()
            && parts[2] == "default",
        "rec_id {rec_id:?}"
    );
    let items = rec_items(&r);
    assert_eq!(items.len(), 10, "COUNT defaults to 10: {items:?}");
    assert_eq!(items[0].id, "B", "{items:?}");
    assert_eq!(items[0].reason.as_deref(), Some("because you purchased A"));
    assert!(items.iter().all(|i| i.score.is_some_and(f64::is_finite)));
    let list: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
    assert!(
        !list.contains(&"A".to_string()),
        "purchased item recommended: {list:?}"
    );
    s.assert_cap(&list, 3);
    let mut dedup = list.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), list.len(), "duplicates in {list:?}");
    // Fill: from the user's top category (c1), then trending.
    let mut saw_category_fill = false;
    for it in &items {
        let reason = it.reason.clone().unwrap();
        if reason == "popular in c1" {
            saw_category_fill = true;
            assert_eq!(s.category(&it.id).as_deref(), Some("c1"), "{it:?}");
        } else {
            assert!(
                reason.starts_with("because you purchased ") || reason == "trending",
                "unexpected reason {reason:?}"
            );
        }
    }
    assert!(saw_category_fill, "no 'popular in c1' fill: {items:?}");

    // The other reply shapes.
    let plain = s.get(&["fresh"]);
    assert!(as_array(&field(&plain, "items"))
        .iter()
        .all(|v| matches!(v, Value::BulkString(_))));
    assert_eq!(rec_ids(&plain), list);
    let only_scores = rec_items(&s.get(&["fresh", "WITHSCORES"]));
    assert!(only_scores
        .iter()
        .all(|i| i.score.is_some() && i.reason.is_none()));
    let first_item = |r: Value| as_array(&field(&r, "items"))[0].clone();
    let item0 = first_item(s.get(&["fresh", "WITHREASONS"]));
    assert_eq!(map_keys(&item0), ["id", "reason"]);
    let item0 = first_item(s.get(&["fresh", "WITHREASONS", "WITHSCORES"]));
    assert_eq!(map_keys(&item0), ["id", "score", "reason"]);

    // REC.GET_RO answers the same.
    let ro = call(
        &mut s.con,
        &["REC.GET_RO", "fresh", "WITHSCORES", "WITHREASONS"],
    );
    let rw = s.get(&["fresh", "WITHSCORES", "WITHREASONS"]);
    assert_eq!(without_field(&ro, "rec_id"), without_field(&rw, "rec_id"));

    // Purchased and disliked items are never returned.
    let buyer = s.get_ids(&["buyer_0", "COUNT", "30", "MAXPERCATEGORY", "0"]);
    for x in ["A", "B", "C"] {
        assert!(
            !buyer.contains(&x.to_string()),
            "purchased {x} in {buyer:?}"
        );
    }
    for u in ["dis", "rat"] {
        let l = s.get_ids(&[u, "COUNT", "30", "MAXPERCATEGORY", "0"]);
        assert!(
            !l.contains(&"B".to_string()),
            "disliked B recommended to {u}: {l:?}"
        );
        assert!(
            !l.contains(&"A".to_string()),
            "purchased A recommended to {u}: {l:?}"
        );
        assert!(!l.is_empty());
    }

    // EXCLUDE.
    let l = s.get_ids(&["fresh", "EXCLUDE", "B"]);
    assert!(
        !l.contains(&"B".to_string()) && !l.contains(&"A".to_string()),
        "{l:?}"
    );
    let l = s.get_ids(&["fresh", "EXCLUDE", "B", "C", "WITHSCORES"]);
    assert!(
        !l.contains(&"B".to_string()) && !l.contains(&"C".to_string()),
        "{l:?}"
    );
    let l = s.get_ids(&["fresh", "EXCLUDE", "B", "EXCLUDE", "C", "COUNT", "20"]);
    assert!(
        !l.contains(&"B".to_string()) && !l.contains(&"C".to_string()),
        "{l:?}"
    );
    assert!(l.len() <= 20);

    // CATEGORY.
    let l = s.get_ids(&["fresh", "CATEGORY", "c4"]);
    assert_eq!(l.first().map(String::as_str), Some("C"), "{l:?}");
    assert!(l.len() <= 3, "cap 3 applies within CATEGORY: {l:?}");
    assert!(
        l.iter().all(|x| s.category(x).as_deref() == Some("c4")),
        "{l:?}"
    );
    let mut l = s.get_ids(&["fresh", "CATEGORY", "c4", "MAXPERCATEGORY", "0"]);
    assert_eq!(l.first().map(String::as_str), Some("C"), "{l:?}");
    l.sort();
    assert_eq!(l, strs(&["C", "p4_0", "p4_1", "p4_2", "p4_3", "p4_4"]));
    assert!(s.get_ids(&["fresh", "CATEGORY", "nosuch"]).is_empty());

    // MODEL popular: popularity order.
    let r = s.get(&["fresh", "MODEL", "popular", "WITHREASONS"]);
    assert_eq!(as_str(&field(&r, "model")), "popular");
    let cold = s.capped_popular(3, &["A"], 10);
    assert_eq!(rec_ids(&r), cold);
    assert!(rec_items(&r)
        .iter()
        .all(|i| i.reason.as_deref() == Some("trending")));
    let r = s.get(&["fresh", "MODEL", "default"]);
    assert_eq!(as_str(&field(&r, "model")), "default");
    assert_eq!(rec_ids(&r), list);

    // The rec_id is accepted by REC.TRACK.
    assert_ok(&call(
        &mut s.con,
        &["REC.TRACK", "fresh", "B", "click", "REC", &rec_id],
    ));

    // Invalidating events: a list served (and cached) before a purchase or a dislike never
    // returns that item afterwards.
    for (u, action) in [("fresh", "purchase"), ("rat", "dislike")] {
        let first = s.get_ids(&[u])[0].clone();
        s.get_ids(&[u]);
        assert_ok(&call(&mut s.con, &["REC.TRACK", u, &first, action]));
        for cmd in ["REC.GET", "REC.GET_RO"] {
            let l = rec_ids(&call(&mut s.con, &[cmd, u]));
            assert!(
                !l.contains(&first),
                "{cmd} {u} returns {first} after {action}: {l:?}"
            );
        }
    }
}

#[test]
fn cold_users_get_popular_items() {
    let mut s = shop();
    let expected = strs(&[
        "p3_0", "p3_1", "p3_2", "p4_0", "p4_1", "p4_2", "p5_0", "p5_1", "p5_2", "p1_0",
    ]);
    assert_eq!(s.capped_popular(3, &[], 10), expected);
    for u in ["nobody", "featured"] {
        let r = s.get(&[u, "WITHREASONS", "WITHSCORES"]);
        assert_eq!(as_str(&field(&r, "model")), "popular", "{u}");
        assert_eq!(as_i64(&field(&r, "cached")), 0);
        assert_eq!(as_str(&field(&r, "source")), "computed");
        let rec_id = as_str(&field(&r, "rec_id"));
        assert!(
            rec_id.starts_with("r1:") && rec_id.ends_with(":popular"),
            "{rec_id}"
        );
        let items = rec_items(&r);
        assert_eq!(
            items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
            expected,
            "{u}"
        );
        assert!(
            items
                .iter()
                .all(|i| i.reason.as_deref() == Some("trending")),
            "{items:?}"
        );
    }
    assert_eq!(
        call(&mut s.con, &["REC.USER.GET", "nobody"]),
        Value::Nil,
        "REC.GET creates no user"
    );

    // Without a cap it is exactly REC.POPULAR.
    let top10 = s.popular(&["COUNT", "10"]);
    assert_eq!(s.get_ids(&["nobody", "MAXPERCATEGORY", "0"]), top10);
    // Explicit caps; items without a category are not limited.
    let l = s.get_ids(&["nobody", "COUNT", "20", "MAXPERCATEGORY", "1"]);
    assert_eq!(l, s.capped_popular(1, &[], 20));
    assert_eq!(
        l,
        strs(&["p3_0", "p4_0", "p5_0", "p1_0", "B", "n0", "n1", "n2", "n3", "n4"])
    );
    s.assert_cap(&l, 1);
    for cap in [2usize, 3, 5] {
        let l = s.get_ids(&["nobody", "COUNT", "30", "MAXPERCATEGORY", &cap.to_string()]);
        s.assert_cap(&l, cap);
        assert_eq!(l, s.capped_popular(cap, &[], 30), "cap {cap}");
    }
    // The config default.
    assert_ok(&call(
        &mut s.con,
        &["CONFIG", "SET", "rec.max-per-category", "2"],
    ));
    let l = s.get_ids(&["nobody", "COUNT", "30"]);
    assert_eq!(l, s.capped_popular(2, &[], 30));
    assert_ok(&call(
        &mut s.con,
        &["CONFIG", "SET", "rec.max-per-category", "3"],
    ));

    // A user with only a negative event has no usable history; the disliked item is skipped.
    let r = s.get(&["cold_dis", "WITHREASONS"]);
    assert_eq!(as_str(&field(&r, "model")), "popular");
    assert_eq!(rec_ids(&r), s.capped_popular(3, &["p3_0"], 10));

    // CATEGORY and COUNT for cold users.
    assert_eq!(
        s.get_ids(&[
            "nobody",
            "CATEGORY",
            "c3",
            "COUNT",
            "5",
            "MAXPERCATEGORY",
            "0"
        ]),
        strs(&["p3_0", "p3_1", "p3_2", "p3_3", "p3_4"])
    );
    assert_eq!(
        s.get_ids(&["nobody", "CATEGORY", "c3", "COUNT", "5"]),
        strs(&["p3_0", "p3_1", "p3_2"])
    );
    assert_eq!(s.get_ids(&["nobody", "COUNT", "1"]), strs(&["p3_0"]));
    let all = s.get_ids(&["nobody", "COUNT", "100"]);
    assert_eq!(all, s.capped_popular(3, &[], 100));
    let all = s.get_ids(&["nobody", "COUNT", "100", "MAXPERCATEGORY", "0"]);
    assert_eq!(all.len(), s.cat.len());
}

#[test]
fn unavailable_and_deleted_items() {
    let mut s = shop();
    assert_eq!(s.get_ids(&["fresh"])[0], "B");
    // Warm every cache the checks below read.
    for u in ["fresh", "nobody", "buyer_5", "dis"] {
        for extra in [
            vec![],
            vec!["MODEL", "popular"],
            vec!["MAXPERCATEGORY", "0", "COUNT", "100"],
        ] {
            let mut a = vec![u];
            a.extend(extra.iter().copied());
            s.get(&a);
            s.get(&a);
        }
    }

    assert_eq!(
        call(&mut s.con, &["REC.ITEM.SET", "B", "AVAILABLE", "0"]),
        Value::Int(0)
    );
    let check_gone = |s: &mut Shop, what: &str| {
        for u in ["fresh", "nobody", "buyer_5", "dis"] {
            for extra in [
                vec![],
                vec!["MODEL", "popular"],
                vec!["MAXPERCATEGORY", "0", "COUNT", "100"],
            ] {
                // Cached lists included: they must not outlive the item change.
                for nocache in [false, true] {
                    let mut a = vec![u];
                    if nocache {
                        a.push("NOCACHE");
                    }
                    a.extend(extra.iter().copied());
                    let l = s.get_ids(&a);
                    assert!(
                        !l.contains(&"B".to_string()),
                        "{what} B in REC.GET {a:?}: {l:?}"
                    );
                    let mut c = vec!["REC.GET_RO"];
                    c.extend(a.iter().copied());
                    let l = rec_ids(&call(&mut s.con, &c));
                    assert!(!l.contains(&"B".to_string()), "{what} B in {c:?}: {l:?}");
                }
            }
        }
        for it in ["A", "C", "p5_0"] {
            let l = s.similar(&[it, "COUNT", "100"]);
            assert!(
                !l.contains(&"B".to_string()),
                "{what} B in REC.SIMILAR {it}: {l:?}"
            );
        }
        let l = s.popular(&["COUNT", "100"]);
        assert!(
            !l.contains(&"B".to_string()),
            "{what} B in REC.POPULAR: {l:?}"
        );
        let l = s.popular(&["COUNT", "100", "CATEGORY", "c2"]);
        assert!(
            !l.contains(&"B".to_string()),
            "{what} B in REC.POPULAR c2: {l:?}"
        );
    };
    check_gone(&mut s, "unavailable");
    assert_eq!(
        call(&mut s.con, &["REC.ITEM.SET", "B", "AVAILABLE", "1"]),
        Value::Int(0)
    );
    // NOCACHE: a list cached while B was hidden may be served until it expires.
    assert_eq!(s.get_ids(&["fresh", "NOCACHE"])[0], "B", "available again");
    assert_eq!(s.similar(&["A"])[0], "B");

    // Events on an unavailable item are still tracked, but it stays hidden.
    assert_eq!(
        call(&mut s.con, &["REC.ITEM.SET", "p3_0", "AVAILABLE", "0"]),
        Value::Int(0)
    );
    assert_ok(&call(
        &mut s.con,
        &["REC.TRACK", "someone", "p3_0", "view", "VALUE", "5000"],
    ));
    assert!(!s.popular(&["COUNT", "100"]).contains(&"p3_0".to_string()));
    assert!(!s.get_ids(&["nobody"]).contains(&"p3_0".to_string()));

    assert_eq!(call(&mut s.con, &["REC.ITEM.DEL", "B"]), Value::Int(1));
    assert_eq!(call(&mut s.con, &["REC.ITEM.GET", "B"]), Value::Nil);
    check_gone(&mut s, "deleted");
    assert!(
        s.similar(&["B"]).is_empty(),
        "a deleted item has no neighbours"
    );
    let l = s.get_ids(&["fresh", "WITHREASONS"]);
    assert!(!l.is_empty());
}

#[test]
fn argument_errors() {
    let mut s = shop();
    let good = s.get(&["fresh", "NOCACHE"]);
    for bad in [
        vec!["COUNT", "0"],
        vec!["COUNT", "101"],
        vec!["COUNT", "-1"],
        vec!["COUNT", "abc"],
        vec!["COUNT", ""],
        vec!["COUNT"],
        vec!["COUNT", "1", "COUNT", "2"],
        vec!["MAXPERCATEGORY", "-1"],
        vec!["MAXPERCATEGORY", "x"],
        vec!["MAXPERCATEGORY"],
        vec!["MODEL"],
        vec!["MODEL", "popular", "EXPERIMENT", "e"],
        vec!["EXPERIMENT", "nosuch"],
        vec!["CATEGORY"],
        vec!["BOGUS"],
        vec!["WITHSCORES", "BOGUS"],
    ] {
        let mut c = vec!["REC.GET", "fresh"];
        c.extend(bad.iter().copied());
        assert_err(&call(&mut s.con, &c), "");
        c[0] = "REC.GET_RO";
        assert_err(&call(&mut s.con, &c), "");
    }
    let r = call(&mut s.con, &["REC.GET", "fresh", "EXPERIMENT", "nosuch"]);
    assert_err(&r, "no such experiment");
    assert_arity_err(&call(&mut s.con, &["REC.GET"]), "rec.get");
    assert_arity_err(&call(&mut s.con, &["REC.GET_RO"]), "rec.get_ro");
    assert_eq!(
        without_field(&s.get(&["fresh", "NOCACHE"]), "rec_id"),
        without_field(&good, "rec_id")
    );
    // COUNT bounds are inclusive.
    assert_eq!(s.get_ids(&["fresh", "COUNT", "1"]).len(), 1);
    assert!(s.get_ids(&["fresh", "COUNT", "100"]).len() <= 100);
    assert_eq!(
        s.get_ids(&["fresh", "count", "3"]).len(),
        3,
        "keywords are case-insensitive"
    );
}

#[test]
fn resp3_maps_and_resp2_arrays() {
    let s = shop();
    let mut c3 = s.srv.connection_resp3();
    let mut c2 = s.srv.connection();

    let r3 = call(&mut c3, &["REC.GET", "fresh", "WITHSCORES", "WITHREASONS"]);
    let Value::Map(m) = &r3 else {
        panic!("RESP3 REC.GET is not a map: {r3:?}")
    };
    assert_eq!(m.len(), 5);
    let items = field(&r3, "items");
    let first = &as_array(&items)[0];
    assert!(
        matches!(first, Value::Map(_)),
        "RESP3 item is not a map: {first:?}"
    );
    assert!(
        matches!(field(first, "score"), Value::Double(_)),
        "{first:?}"
    );
    assert_eq!(field(&r3, "cached"), Value::Int(0));

    let r2 = call(&mut c2, &["REC.GET", "fresh", "WITHSCORES", "WITHREASONS"]);
    let Value::Array(a) = &r2 else {
        panic!("RESP2 REC.GET is not an array: {r2:?}")
    };
    assert_eq!(a.len(), 10, "flat key/value array");
    assert_eq!(as_str(&a[0]), "items");
    let first2 = &as_array(&a[1])[0];
    assert!(matches!(first2, Value::Array(_)), "{first2:?}");
    assert!(
        matches!(field(first2, "score"), Value::BulkString(_)),
        "{first2:?}"
    );
    // Same content.
    assert_eq!(rec_items(&r3), rec_items(&r2));

    let p3 = call(&mut c3, &["REC.POPULAR", "COUNT", "5", "WITHSCORES"]);
    assert!(matches!(p3, Value::Map(_)), "{p3:?}");
    let p2 = call(&mut c2, &["REC.POPULAR", "COUNT", "5", "WITHSCORES"]);
    assert!(matches!(&p2, Value::Array(a) if a.len() == 10), "{p2:?}");
    assert_eq!(scored(&p3), scored(&p2));
    let s3 = call(&mut c3, &["REC.SIMILAR", "A", "WITHSCORES"]);
    assert!(matches!(s3, Value::Map(_)), "{s3:?}");
    assert_eq!(
        scored(&s3),
        scored(&call(&mut c2, &["REC.SIMILAR", "A", "WITHSCORES"]))
    );
    assert!(matches!(
        call(&mut c3, &["REC.POPULAR", "COUNT", "3"]),
        Value::Array(_)
    ));

    let i3 = call(&mut c3, &["REC.ITEM.GET", "A"]);
    assert!(matches!(i3, Value::Map(_)), "{i3:?}");
    assert!(matches!(field(&i3, "popularity"), Value::Double(_)));
    assert_eq!(call(&mut c3, &["REC.ITEM.GET", "zzz"]), Value::Nil);
    let u3 = call(&mut c3, &["REC.USER.GET", "buyer_0"]);
    assert!(matches!(u3, Value::Map(_)), "{u3:?}");
    assert!(matches!(field(&u3, "actions"), Value::Map(_)));
    assert!(matches!(field(&u3, "features"), Value::Map(_)));
    let m3 = call(&mut c3, &["REC.MODEL.GET", "default"]);
    assert!(matches!(m3, Value::Map(_)), "{m3:?}");
    assert!(matches!(field(&m3, "cooc"), Value::Double(_)));
    let m2 = call(&mut c2, &["REC.MODEL.GET", "default"]);
    assert!(matches!(m2, Value::Array(_)), "{m2:?}");
}
