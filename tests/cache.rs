//! The tiered recommendation cache (issue 3): L1 in-process LRU → L2 per-user hash with a
//! jittered TTL → compute; early refresh (XFetch); invalidation by every documented cause, on the
//! primary and on replicas; eviction under maxmemory; REC.GET_RO on read-only replicas; INFO.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;
use redis::{Connection, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What a cached list must reproduce exactly: the model that scored it and its items with
/// scores and reasons.
#[derive(Debug, Clone, PartialEq)]
struct Content {
    model: String,
    items: Vec<RecItem>,
}

impl Content {
    fn contains(&self, item: &str) -> bool {
        self.items.iter().any(|i| i.id == item)
    }

    fn ids(&self) -> Vec<String> {
        self.items.iter().map(|i| i.id.clone()).collect()
    }
}

/// One REC.GET / REC.GET_RO reply.
#[derive(Debug, Clone)]
struct Got {
    content: Content,
    source: String,
    cached: i64,
}

/// `<cmd> <user> <shape...> WITHSCORES WITHREASONS [NOCACHE]`.
fn get_cmd(cmd: &str, user: &str, shape: &[&str], nocache: bool) -> Vec<Vec<u8>> {
    let mut c = args(&[cmd, user]);
    c.extend(args(shape));
    c.extend(args(&["WITHSCORES", "WITHREASONS"]));
    if nocache {
        c.push(b"NOCACHE".to_vec());
    }
    c
}

#[track_caller]
fn parse_got(cmd: &[Vec<u8>], v: &Value) -> Got {
    assert!(!is_err(v), "{} -> {v:?}", show_cmd(cmd));
    let source = as_str(&field(v, "source"));
    let cached = as_i64(&field(v, "cached"));
    assert!(
        ["l1", "l2", "computed"].contains(&source.as_str()),
        "{} -> source {source}",
        show_cmd(cmd)
    );
    assert_eq!(
        cached,
        i64::from(source != "computed"),
        "{} -> cached {cached} with source {source}",
        show_cmd(cmd)
    );
    Got {
        content: Content {
            model: as_str(&field(v, "model")),
            items: rec_items(v),
        },
        source,
        cached,
    }
}

#[track_caller]
fn rget(con: &mut Connection, cmd: &str, user: &str, shape: &[&str], nocache: bool) -> Got {
    let c = get_cmd(cmd, user, shape, nocache);
    let v = call(con, &c);
    parse_got(&c, &v)
}

#[track_caller]
fn get(con: &mut Connection, user: &str, shape: &[&str]) -> Got {
    rget(con, "REC.GET", user, shape, false)
}

#[track_caller]
fn get_nocache(con: &mut Connection, user: &str, shape: &[&str]) -> Got {
    let g = rget(con, "REC.GET", user, shape, true);
    assert_eq!(g.source, "computed", "NOCACHE must compute: {g:?}");
    g
}

/// The L2 key of a user whose id is a plain string (no braces).
fn cache_key(user: &str) -> String {
    format!("rec:{{{user}}}:c")
}

fn user_key(user: &str) -> String {
    format!("rec:{{{user}}}:u")
}

fn info_i64(con: &mut Connection, section: &str, key: &str) -> i64 {
    let i = info(con, section);
    i.get(key)
        .unwrap_or_else(|| panic!("INFO {section} has no {key}: {i:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO {section} {key} is not an integer: {i:?}"))
}

fn rec_info(con: &mut Connection) -> HashMap<String, String> {
    info(con, "rec")
}

fn num(i: &HashMap<String, String>, key: &str) -> i64 {
    i.get(key)
        .unwrap_or_else(|| panic!("INFO rec has no {key}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO rec {key} not an integer: {:?}", i.get(key)))
}

fn fnum(i: &HashMap<String, String>, key: &str) -> f64 {
    i.get(key)
        .unwrap_or_else(|| panic!("INFO rec has no {key}"))
        .parse()
        .unwrap_or_else(|_| panic!("INFO rec {key} not a number: {:?}", i.get(key)))
}

#[track_caller]
fn config_set(con: &mut Connection, name: &str, value: &str) {
    assert_ok(&call(con, &["CONFIG", "SET", name, value]));
}

/// A reproducible shop from the shared workload generator; returns it after loading.
fn load_shop(
    con: &mut Connection,
    seed: u64,
    users: usize,
    items: usize,
    events: usize,
) -> Workload {
    let mut rng = Rng::new(seed);
    let mut wl = Workload::new(users, items);
    wl.setup(&mut rng);
    wl.events(&mut rng, events, 0.0);
    run_all(con, &wl.commands);
    wl
}

/// Users of the shop that still have a real history (the workload deletes a few users).
fn active_users(con: &mut Connection, wl: &Workload, min_events: i64) -> Vec<String> {
    wl.users
        .iter()
        .filter(|u| {
            let v = call(con, &["REC.USER.GET", u.as_str()]);
            v != Value::Nil && as_i64(&field(&v, "events")) >= min_events
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// L1, then L2 after a restart
// ---------------------------------------------------------------------------------------------

#[test]
fn second_get_from_l1_and_from_l2_after_restart() {
    let mut srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 11, 60, 80, 2_000);
    let mut users = active_users(&mut con, &wl, 5);
    users.truncate(4);
    users.push("cold-user".to_string()); // no history: popular items
    let shapes: [&[&str]; 4] = [
        &[],
        &["COUNT", "5", "MODEL", "m1"],
        &["CATEGORY", "cat1", "COUNT", "20"],
        &["EXCLUDE", "item0", "item1", "MAXPERCATEGORY", "1"],
    ];

    let mut computed: HashMap<(String, usize), Content> = HashMap::new();
    for u in &users {
        for (s, shape) in shapes.iter().enumerate() {
            let first = get(&mut con, u, shape);
            assert_eq!(first.source, "computed", "first REC.GET {u} {shape:?}");
            assert_eq!(first.cached, 0);
            let second = get(&mut con, u, shape);
            assert_eq!(second.source, "l1", "second REC.GET {u} {shape:?}");
            assert_eq!(second.cached, 1);
            assert_eq!(second.content, first.content, "L1 reply of {u} {shape:?}");
            // WITHSCORES / WITHREASONS only format: the bare request is the same shape.
            let mut bare = vec!["REC.GET", u.as_str()];
            bare.extend_from_slice(shape);
            let r = call(&mut con, &bare);
            assert_eq!(as_str(&field(&r, "source")), "l1", "{bare:?}");
            assert_eq!(rec_ids(&r), first.content.ids(), "{bare:?}");
            computed.insert((u.clone(), s), first.content);
        }
        let pttl = as_i64(&call(&mut con, &["PTTL", &cache_key(u)]));
        assert!(pttl > 200_000, "L2 key of {u} has PTTL {pttl}");
    }
    assert!(
        computed.values().any(|c| !c.items.is_empty()),
        "every list is empty: the test would prove nothing"
    );

    assert_ok(&call(&mut con, &["SAVE"]));
    srv.restart();
    let mut con = srv.connection();
    assert_eq!(
        info_i64(&mut con, "rec", "rec_l1_entries"),
        0,
        "L1 is empty after a restart"
    );
    for u in &users {
        for (s, shape) in shapes.iter().enumerate() {
            let want = &computed[&(u.clone(), s)];
            let g = get(&mut con, u, shape);
            assert_eq!(g.source, "l2", "after restart, REC.GET {u} {shape:?}");
            assert_eq!(g.cached, 1);
            assert_eq!(&g.content, want, "L2 reply of {u} {shape:?} after restart");
            let g = get(&mut con, u, shape);
            assert_eq!(g.source, "l1", "then REC.GET {u} {shape:?} again");
            assert_eq!(&g.content, want);
            // Nothing changed, so a fresh computation agrees with the cached list.
            let n = get_nocache(&mut con, u, shape);
            assert_eq!(&n.content, want, "NOCACHE {u} {shape:?} after restart");
        }
    }
    let i = rec_info(&mut con);
    assert_eq!(num(&i, "rec_l2_hits"), (users.len() * shapes.len()) as i64);
    assert_eq!(
        num(&i, "rec_l2_keys"),
        users.len() as i64,
        "L2 keys loaded from the RDB"
    );
}

// ---------------------------------------------------------------------------------------------
// Jittered TTLs, replicated as absolute expiry
// ---------------------------------------------------------------------------------------------

#[test]
fn l2_ttls_are_jittered_and_equal_on_replica() {
    const N: usize = 1_000;
    let primary = Server::start();
    let replica = Server::replica_of(&primary);
    let mut p = primary.connection();
    let mut r = replica.connection();

    let users: Vec<String> = (0..N).map(|i| format!("ttl{i}")).collect();
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for (i, u) in users.iter().enumerate() {
        cmds.push(args(&["REC.TRACK", u, &format!("item{}", i % 50), "view"]));
        cmds.push(args(&[
            "REC.TRACK",
            u,
            &format!("item{}", (i * 7) % 50),
            "click",
        ]));
    }
    run_all(&mut p, &cmds);

    let t0 = Instant::now();
    let gets: Vec<Vec<Vec<u8>>> = users.iter().map(|u| args(&["REC.GET", u])).collect();
    for (c, v) in gets.iter().zip(call_pipelined(&mut p, &gets)) {
        assert_eq!(as_str(&field(&v, "source")), "computed", "{}", show_cmd(c));
    }
    let pttls_cmd: Vec<Vec<Vec<u8>>> = users
        .iter()
        .map(|u| args(&["PTTL", &cache_key(u)]))
        .collect();
    let pttls: Vec<i64> = call_pipelined(&mut p, &pttls_cmd)
        .iter()
        .map(as_i64)
        .collect();
    let elapsed = t0.elapsed().as_millis() as i64;

    let (lo, hi) = (270_000i64, 330_000i64);
    for (u, &t) in users.iter().zip(&pttls) {
        assert!(
            t <= hi && t >= lo - elapsed - 5,
            "PTTL of {} is {t}, outside {lo}..{hi} (fill and read took {elapsed} ms)",
            cache_key(u)
        );
    }
    let distinct: BTreeSet<i64> = pttls.iter().copied().collect();
    let (min, max) = (*distinct.first().unwrap(), *distinct.last().unwrap());
    assert!(
        distinct.len() >= 20,
        "only {} distinct TTLs: {distinct:?}",
        distinct.len()
    );
    assert!(
        max - min > (hi - lo) / 2,
        "TTLs span only {min}..{max} of {lo}..{hi}"
    );
    // Uniform over the range: every tenth of it holds a fair share (expected 100 of 1,000).
    let mut bins = [0usize; 10];
    for &t in &pttls {
        let b = ((t.clamp(lo, hi - 1) - lo) * 10 / (hi - lo)) as usize;
        bins[b] += 1;
    }
    assert!(
        bins.iter().all(|&n| n >= 40),
        "TTLs are not spread evenly over {lo}..{hi}: per tenth {bins:?}"
    );

    // The replica holds the same keys expiring at the same absolute moment.
    wait_replica_synced(&primary, &replica);
    let on_primary = call_pipelined(&mut p, &pttls_cmd);
    let on_replica = call_pipelined(&mut r, &pttls_cmd);
    for ((c, a), b) in pttls_cmd.iter().zip(&on_primary).zip(&on_replica) {
        let (a, b) = (as_i64(a), as_i64(b));
        assert!(b > 0, "{} on the replica: {b}", show_cmd(c));
        assert!(
            (a - b).abs() <= 1_000,
            "{}: primary {a} ms, replica {b} ms",
            show_cmd(c)
        );
    }
    let expiretimes: Vec<Vec<Vec<u8>>> = users
        .iter()
        .map(|u| args(&["PEXPIRETIME", &cache_key(u)]))
        .collect();
    let on_primary = call_pipelined(&mut p, &expiretimes);
    let on_replica = call_pipelined(&mut r, &expiretimes);
    for ((c, a), b) in expiretimes.iter().zip(&on_primary).zip(&on_replica) {
        assert_eq!(
            as_i64(a),
            as_i64(b),
            "{}: the replica must expire the key at the primary's absolute time",
            show_cmd(c)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Every invalidation cause
// ---------------------------------------------------------------------------------------------

/// Caches `user`'s `shape`, makes a non-invalidating change that alters the list (a heavy view),
/// checks the cache still serves the old list, applies `cause`, and checks the next REC.GET is
/// computed and equals REC.GET NOCACHE (and differs from the old list). Returns the old list and
/// the cause's reply.
fn check_cause(
    con: &mut Connection,
    what: &str,
    user: &str,
    shape: &[&str],
    perturb_item: &str,
    cause: &[&str],
) -> (Content, Value) {
    let before = get_nocache(con, user, shape).content;
    let hit = get(con, user, shape);
    assert_eq!(hit.source, "l1", "{what}: the list is cached");
    assert_eq!(hit.content, before);
    assert!(
        !before.items.is_empty(),
        "{what}: {user} gets an empty list"
    );

    // A view is not an invalidating action: the cached list keeps being served.
    assert_ok(&call(
        con,
        &["REC.TRACK", user, perturb_item, "view", "VALUE", "40"],
    ));
    let still = get(con, user, shape);
    assert_eq!(still.source, "l1", "{what}: a view does not invalidate");
    assert_eq!(still.content, before, "{what}: a view does not invalidate");

    let reply = call(con, cause);
    assert!(!is_err(&reply), "{what}: {cause:?} -> {reply:?}");

    let after = get(con, user, shape);
    assert_eq!(
        after.source, "computed",
        "{what}: after {cause:?}, REC.GET {user} {shape:?} must not be served from a cache"
    );
    let fresh = get_nocache(con, user, shape);
    assert_eq!(
        after.content, fresh.content,
        "{what}: after {cause:?}, REC.GET {user} {shape:?} differs from REC.GET NOCACHE"
    );
    assert_ne!(
        fresh.content, before,
        "{what}: the change did not alter the list, so the check proves nothing"
    );
    (before, reply)
}

#[test]
fn every_invalidation_cause_drops_the_cached_list() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 23, 80, 60, 3_000);
    let users = active_users(&mut con, &wl, 8);
    assert!(users.len() >= 19, "only {} active users", users.len());
    let mut next = users.iter();
    let mut user = || next.next().unwrap().clone();
    // A popular item with many neighbours: a heavy view of it reshapes anyone's list.
    let hot = as_str(&as_array(&call(&mut con, &["REC.POPULAR", "COUNT", "1"]))[0]);
    let d: &[&str] = &["COUNT", "10"];

    // REC.INVALIDATE <user>: with two request shapes cached, it reports both.
    let u = user();
    get(&mut con, &u, &["COUNT", "5"]);
    let (_, r) = check_cause(
        &mut con,
        "INVALIDATE user",
        &u,
        d,
        &hot,
        &["REC.INVALIDATE", &u],
    );
    assert_eq!(r, Value::Int(2), "REC.INVALIDATE {u} with 2 cached lists");
    assert_eq!(
        call(&mut con, &["EXISTS", &cache_key(&u)]),
        Value::Int(1),
        "refilled by the REC.GET that followed"
    );

    // Invalidating events of the user.
    for (action, extra, pos, gone) in [
        ("purchase", None, 0usize, true),
        ("add_to_cart", None, 1, false),
        ("rating", Some("5"), 0, false),
        ("rating", Some("1"), 1, true),
        ("dislike", None, 0, true),
    ] {
        let u = user();
        let list = get_nocache(&mut con, &u, d).content;
        let item = list.items[pos.min(list.items.len() - 1)].id.clone();
        let mut cause = vec!["REC.TRACK", u.as_str(), item.as_str(), action];
        if let Some(v) = extra {
            cause.extend(["VALUE", v]);
        }
        let what = format!("{action} {extra:?}");
        check_cause(&mut con, &what, &u, d, &hot, &cause);
        let now = get(&mut con, &u, d).content;
        if gone {
            assert!(
                !now.contains(&item),
                "{what}: {item} still recommended: {now:?}"
            );
        }
    }

    // REC.ITEM.SET of an item in the list: any attribute, availability included.
    for (what, opts, gone) in [
        ("ITEM.SET TAGS", &["TAGS", "zz"][..], false),
        (
            "ITEM.SET CATEGORY",
            &["CATEGORY", "brand-new-cat"][..],
            false,
        ),
        ("ITEM.SET AVAILABLE 0", &["AVAILABLE", "0"][..], true),
    ] {
        let u = user();
        let list = get_nocache(&mut con, &u, d).content;
        let item = list.items[0].id.clone();
        let mut cause = vec!["REC.ITEM.SET", item.as_str()];
        cause.extend_from_slice(opts);
        let (_, r) = check_cause(&mut con, what, &u, d, &hot, &cause);
        assert_eq!(r, Value::Int(0), "{cause:?} updates an existing item");
        if gone {
            let now = get(&mut con, &u, d).content;
            assert!(!now.contains(&item), "{what}: {item} still recommended");
        }
    }

    // REC.ITEM.DEL of an item in the list.
    let u = user();
    let list = get_nocache(&mut con, &u, d).content;
    let item = list.items[1.min(list.items.len() - 1)].id.clone();
    let (_, r) = check_cause(&mut con, "ITEM.DEL", &u, d, &hot, &["REC.ITEM.DEL", &item]);
    assert_eq!(r, Value::Int(1));
    assert!(!get(&mut con, &u, d).content.contains(&item));

    // REC.MODEL.SET of the model that produced the list (built-in default and a custom one).
    let u = user();
    let (_, r) = check_cause(
        &mut con,
        "MODEL.SET default",
        &u,
        d,
        &hot,
        &["REC.MODEL.SET", "default", "POPULARITY", "0.7"],
    );
    assert_eq!(r, Value::Int(0));
    let u = user();
    let (_, r) = check_cause(
        &mut con,
        "MODEL.SET m1",
        &u,
        &["MODEL", "m1"],
        &hot,
        &["REC.MODEL.SET", "m1", "COOC", "0.25", "AFFINITY", "1.5"],
    );
    assert_eq!(r, Value::Int(0));

    // REC.INVALIDATE ITEM of an item in the list.
    let u = user();
    let list = get_nocache(&mut con, &u, d).content;
    let item = list.items[0].id.clone();
    let (_, r) = check_cause(
        &mut con,
        "INVALIDATE ITEM",
        &u,
        d,
        &hot,
        &["REC.INVALIDATE", "ITEM", &item],
    );
    assert!(as_i64(&r) >= 1, "REC.INVALIDATE ITEM {item} -> {r:?}");

    // REC.INVALIDATE ALL.
    let u = user();
    let (_, r) = check_cause(
        &mut con,
        "INVALIDATE ALL",
        &u,
        d,
        &hot,
        &["REC.INVALIDATE", "ALL"],
    );
    assert!(as_i64(&r) >= 1, "REC.INVALIDATE ALL -> {r:?}");

    // REC.USER.DEL: the user's lists go with them (they get popular items now).
    let u = user();
    let (_, r) = check_cause(&mut con, "USER.DEL", &u, d, &hot, &["REC.USER.DEL", &u]);
    assert_eq!(r, Value::Int(1));
    assert_eq!(get(&mut con, &u, d).content.model, "popular");

    // REC.MODEL.DEL, then the same name created again: the old lists of that name stay dead.
    let u = user();
    let m3: &[&str] = &["MODEL", "m3"];
    let before = get_nocache(&mut con, &u, m3).content;
    assert_eq!(get(&mut con, &u, m3).source, "l1");
    assert_eq!(call(&mut con, &["REC.MODEL.DEL", "m3"]), Value::Int(1));
    let v = call(&mut con, &["REC.GET", u.as_str(), "MODEL", "m3"]);
    assert_err(&v, "no such model");
    assert_eq!(
        call(&mut con, &["REC.MODEL.SET", "m3", "POPULARITY", "3"]),
        Value::Int(1)
    );
    let after = get(&mut con, &u, m3);
    assert_eq!(after.source, "computed", "m3 was deleted and created again");
    let fresh = get_nocache(&mut con, &u, m3);
    assert_eq!(after.content, fresh.content);
    assert_ne!(fresh.content, before, "the new m3 scores differently");

    // rec.invalidating-actions: purchase and dislike always invalidate, other actions only
    // when listed.
    config_set(&mut con, "rec.invalidating-actions", "click");
    let u = user();
    check_cause(
        &mut con,
        "listed click",
        &u,
        d,
        &hot,
        &["REC.TRACK", &u, &hot, "click"],
    );
    let list = get(&mut con, &u, d).content;
    assert_ok(&call(
        &mut con,
        &["REC.TRACK", &u, &list.items[0].id, "add_to_cart"],
    ));
    let g = get(&mut con, &u, d);
    assert_eq!(
        g.source, "l1",
        "add_to_cart is no longer an invalidating action"
    );
    assert_eq!(g.content, list);
    let u = user();
    let list = get_nocache(&mut con, &u, d).content;
    let item = list.items[0].id.clone();
    check_cause(
        &mut con,
        "dislike (always)",
        &u,
        d,
        &hot,
        &["REC.TRACK", &u, &item, "dislike"],
    );
    let u = user();
    let list = get_nocache(&mut con, &u, d).content;
    let item = list.items[0].id.clone();
    check_cause(
        &mut con,
        "purchase (always)",
        &u,
        d,
        &hot,
        &["REC.TRACK", &u, &item, "purchase"],
    );
}

#[test]
fn invalidate_return_values() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 5, 40, 50, 1_500);
    let users = active_users(&mut con, &wl, 3);
    let users = &users[..6];
    let shapes: [&[&str]; 3] = [&[], &["COUNT", "5"], &["MODEL", "m2"]];

    // Unknown user, unknown item, nothing cached.
    assert_eq!(call(&mut con, &["REC.INVALIDATE", "nobody"]), Value::Int(0));
    assert_eq!(
        call(&mut con, &["REC.INVALIDATE", "ITEM", "no-such-item"]),
        Value::Int(0)
    );
    assert_eq!(call(&mut con, &["REC.INVALIDATE", "ALL"]), Value::Int(0));
    assert_arity_err(&call(&mut con, &["REC.INVALIDATE"]), "REC.INVALIDATE");
    assert!(
        is_err(&call(&mut con, &["REC.INVALIDATE", "a", "b", "c"])),
        "REC.INVALIDATE with three arguments"
    );

    let mut lists: HashMap<(String, usize), Content> = HashMap::new();
    let fill = |con: &mut Connection, lists: &mut HashMap<(String, usize), Content>| {
        for u in users {
            for (s, shape) in shapes.iter().enumerate() {
                lists.insert((u.clone(), s), get(con, u, shape).content);
            }
        }
    };
    fill(&mut con, &mut lists);
    let n = (users.len() * shapes.len()) as i64;
    let i = rec_info(&mut con);
    assert_eq!(num(&i, "rec_l1_entries"), n);
    assert_eq!(num(&i, "rec_l2_keys"), users.len() as i64);

    // <user>: the fields of their L2 key; then nothing is left.
    let u0 = &users[0];
    assert_eq!(call(&mut con, &["HLEN", &cache_key(u0)]), Value::Int(3));
    assert_eq!(call(&mut con, &["REC.INVALIDATE", u0]), Value::Int(3));
    assert_eq!(call(&mut con, &["EXISTS", &cache_key(u0)]), Value::Int(0));
    assert_eq!(call(&mut con, &["REC.INVALIDATE", u0]), Value::Int(0));
    for shape in shapes {
        assert_eq!(get(&mut con, u0, shape).source, "computed");
    }

    // ITEM: the L1 lists holding the item.
    let mut count: HashMap<String, i64> = HashMap::new();
    for c in lists.values() {
        for it in c.ids().into_iter().collect::<BTreeSet<_>>() {
            *count.entry(it).or_default() += 1;
        }
    }
    let (item, holders) = count
        .iter()
        .max_by_key(|(id, n)| (**n, std::cmp::Reverse((*id).clone())))
        .map(|(i, n)| (i.clone(), *n))
        .unwrap();
    assert!(holders >= 2, "no item is in two lists: {count:?}");
    assert_eq!(
        call(&mut con, &["REC.INVALIDATE", "ITEM", &item]),
        Value::Int(holders),
        "REC.INVALIDATE ITEM {item}: lists holding it"
    );
    assert_eq!(
        call(&mut con, &["REC.INVALIDATE", "ITEM", &item]),
        Value::Int(0),
        "the lists holding {item} are gone from L1"
    );
    for ((u, s), c) in &lists {
        if c.contains(&item) {
            let g = get(&mut con, u, shapes[*s]);
            assert_eq!(g.source, "computed", "{u} {:?} held {item}", shapes[*s]);
        }
    }

    // ALL: the larger of L1 lists and L2 keys.
    fill(&mut con, &mut lists);
    let i = rec_info(&mut con);
    let (l1, l2) = (num(&i, "rec_l1_entries"), num(&i, "rec_l2_keys"));
    assert_eq!((l1, l2), (n, users.len() as i64));
    assert_eq!(
        call(&mut con, &["REC.INVALIDATE", "ALL"]),
        Value::Int(l1.max(l2))
    );
    assert_eq!(info_i64(&mut con, "rec", "rec_l1_entries"), 0);
    let again = as_i64(&call(&mut con, &["REC.INVALIDATE", "ALL"]));
    assert!(again <= l1.max(l2), "second REC.INVALIDATE ALL -> {again}");
    for u in users {
        for shape in shapes {
            assert_eq!(get(&mut con, u, shape).source, "computed", "{u} {shape:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Randomized: never stale, on the primary and on a replica
// ---------------------------------------------------------------------------------------------

const SHAPES: [&[&str]; 6] = [
    &[],
    &["COUNT", "5"],
    &["MODEL", "m1"],
    &["CATEGORY", "cat1"],
    &["EXCLUDE", "item0", "item1"],
    &["MODEL", "m2", "MAXPERCATEGORY", "1", "COUNT", "15"],
];

fn shape_model<'a>(shape: &[&'a str]) -> &'a str {
    shape
        .iter()
        .position(|a| *a == "MODEL")
        .map_or("default", |p| shape[p + 1])
}

/// What an invalidating step should make unservable.
#[derive(Debug, Clone)]
enum Affects {
    User(String),
    Item(String),
    Model(String),
    All,
}

impl Affects {
    fn pair(&self, user: &str, shape: &[&str]) -> bool {
        match self {
            Affects::User(u) => u == user,
            Affects::Model(m) => shape_model(shape) == m,
            Affects::All => true,
            Affects::Item(_) => false,
        }
    }

    /// Whether a list cached for (`user`, `shape`) with content `c` must not be served.
    fn list(&self, user: &str, shape: &[&str], c: &Content) -> bool {
        match self {
            Affects::Item(i) => c.contains(i),
            _ => self.pair(user, shape),
        }
    }
}

#[test]
fn randomized_never_stale_on_primary_and_replica() {
    const STEPS: usize = 400;
    let primary = Server::start();
    let mut p = primary.connection();
    let mut rng = Rng::new(0x00CA_C4E5);
    let wl = load_shop(&mut p, 0x5EED, 10, 30, 400);
    let replica = Server::replica_of(&primary);
    let mut r = replica.connection();
    let users = wl.users.clone();
    let items: Vec<String> = wl.items.clone();

    // What each tier holds, as last seen: the primary's L1 = its L2 (also the replica's L2),
    // and the replica's own L1 (filled by REC.GET_RO).
    let mut prim: HashMap<(usize, usize), Content> = HashMap::new();
    let mut repl: HashMap<(usize, usize), Content> = HashMap::new();
    let mut history: Vec<String> = Vec::new();
    let (mut p_checks, mut r_checks) = (0usize, 0usize);
    let mut invalidating_steps = 0usize;

    // The replica's L1 is turned off for the middle third, so REC.GET_RO reads the primary's
    // lists from L2 (checking stamps across nodes), then on again with what it held before.
    let mut replica_l1 = true;
    for step in 0..STEPS {
        let want_l1 = !(STEPS / 3..2 * STEPS / 3).contains(&step);
        if want_l1 != replica_l1 {
            replica_l1 = want_l1;
            let size = if want_l1 { "10000" } else { "0" };
            config_set(&mut r, "rec.l1-size", size);
            history.push(format!("{step}: replica CONFIG SET rec.l1-size {size}"));
        }
        let roll = rng.below(100);
        let u = rng.index(users.len());
        let user = users[u].clone();
        let item = if rng.chance(0.05) {
            format!("new{step}")
        } else {
            rng.pick(&items).clone()
        };
        let (cmd, affects): (Vec<String>, Option<Affects>) = match roll {
            0..=34 => {
                let action = *rng.pick(&ACTIONS);
                let mut c = vec!["REC.TRACK".into(), user.clone(), item, action.into()];
                if action == "rating" {
                    c.extend(["VALUE".into(), rng.range(1, 5).to_string()]);
                }
                let inv = ["purchase", "add_to_cart", "rating", "dislike"].contains(&action);
                (c, inv.then(|| Affects::User(user.clone())))
            }
            35..=44 => {
                let mut c = vec!["REC.ITEM.SET".to_string(), item.clone()];
                if rng.chance(0.6) {
                    c.extend(["CATEGORY".into(), format!("cat{}", rng.below(8))]);
                }
                match rng.below(4) {
                    0 => c.extend(["AVAILABLE".into(), "0".into()]),
                    1 => c.extend(["AVAILABLE".into(), "1".into()]),
                    _ => c.extend(["TAGS".into(), format!("t{}", rng.below(5))]),
                }
                (c, Some(Affects::Item(item)))
            }
            45..=48 => (
                vec!["REC.ITEM.DEL".into(), item.clone()],
                Some(Affects::Item(item)),
            ),
            49..=52 => {
                let m = *rng.pick(&["default", "m1", "m2"]);
                let w = |r: &mut Rng| format!("{}", r.below(300) as f64 / 100.0);
                let c = vec![
                    "REC.MODEL.SET".into(),
                    m.into(),
                    "COOC".into(),
                    w(&mut rng),
                    "AFFINITY".into(),
                    w(&mut rng),
                    "POPULARITY".into(),
                    w(&mut rng),
                ];
                (c, Some(Affects::Model(m.into())))
            }
            53..=55 => (
                vec!["REC.INVALIDATE".into(), user.clone()],
                Some(Affects::User(user.clone())),
            ),
            56..=57 => (
                vec!["REC.INVALIDATE".into(), "ITEM".into(), item.clone()],
                Some(Affects::Item(item)),
            ),
            58 => (
                vec!["REC.INVALIDATE".into(), "ALL".into()],
                Some(Affects::All),
            ),
            59..=79 => {
                let s = rng.index(SHAPES.len());
                let g = get(&mut p, &user, SHAPES[s]);
                history.push(format!(
                    "{step}: REC.GET {user} {:?} -> {}",
                    SHAPES[s], g.source
                ));
                prim.insert((u, s), g.content);
                continue;
            }
            _ => {
                let s = rng.index(SHAPES.len());
                let g = rget(&mut r, "REC.GET_RO", &user, SHAPES[s], false);
                history.push(format!(
                    "{step}: replica REC.GET_RO {user} {:?} -> {}",
                    SHAPES[s], g.source
                ));
                if replica_l1 {
                    repl.insert((u, s), g.content);
                }
                continue;
            }
        };
        let reply = call(&mut p, &cmd);
        assert!(!is_err(&reply), "step {step}: {cmd:?} -> {reply:?}");
        history.push(format!("{step}: {cmd:?} -> {reply:?}"));
        let Some(aff) = affects else { continue };
        invalidating_steps += 1;
        wait_replica_synced(&primary, &replica);

        let tail = |h: &[String]| h[h.len().saturating_sub(12)..].join("\n");
        for (ui, uname) in users.iter().enumerate() {
            for (s, shape) in SHAPES.iter().enumerate() {
                let key = (ui, s);
                let hit = |c: &Content| aff.list(uname, shape, c);
                let p_aff = prim.get(&key).is_some_and(hit);
                let r_aff = repl.get(&key).is_some_and(hit);
                if !(p_aff || r_aff || aff.pair(uname, shape)) {
                    continue;
                }
                // A node must recompute only when every tier it may serve from holds an affected
                // list or nothing: an unaffected cached list may be legitimately behind (views,
                // other users' events) until it expires. The primary serves L1 = L2 (`prim`);
                // the replica its own L1 (`repl`, when on), then the primary's L2 (`prim`).
                let p_must = prim.get(&key).is_none_or(hit);
                let r_must = p_must && (!replica_l1 || repl.get(&key).is_none_or(hit));
                let ctx = || {
                    format!(
                        "step {step} after {cmd:?}: {uname} {shape:?}\nrecent steps:\n{}",
                        tail(&history)
                    )
                };
                // The replica first, while its L2 still holds the primary's old list.
                let mut replica_fresh = None;
                if r_must {
                    r_checks += 1;
                    let g = rget(&mut r, "REC.GET_RO", uname, shape, false);
                    let n = rget(&mut r, "REC.GET_RO", uname, shape, true);
                    assert_eq!(
                        g.content,
                        n.content,
                        "replica: REC.GET_RO differs from REC.GET_RO NOCACHE (source {}), {}",
                        g.source,
                        ctx()
                    );
                    if g.source == "l1" {
                        assert!(replica_l1, "replica served from a disabled L1, {}", ctx());
                        assert!(!r_aff, "replica served an invalidated L1 list, {}", ctx());
                    }
                    if g.source == "l2" {
                        assert!(!p_aff, "replica served an invalidated L2 list, {}", ctx());
                    }
                    if replica_l1 {
                        repl.insert(key, n.content.clone());
                    }
                    replica_fresh = Some(n.content);
                }
                if p_must {
                    p_checks += 1;
                    let pg = get(&mut p, uname, shape);
                    let pn = get_nocache(&mut p, uname, shape);
                    assert_eq!(
                        pg.content,
                        pn.content,
                        "primary: REC.GET differs from REC.GET NOCACHE (source {}), {}",
                        pg.source,
                        ctx()
                    );
                    if p_aff {
                        assert_eq!(
                            pg.source,
                            "computed",
                            "primary served an invalidated list, {}",
                            ctx()
                        );
                    }
                    if let Some(n) = &replica_fresh {
                        assert_eq!(
                            &pn.content,
                            n,
                            "replica and primary compute different lists, {}",
                            ctx()
                        );
                    }
                    prim.insert(key, pn.content);
                }
            }
        }
    }
    assert!(
        invalidating_steps >= 100,
        "{invalidating_steps} invalidating steps"
    );
    eprintln!("{invalidating_steps} invalidating steps, {p_checks} primary and {r_checks} replica comparisons");
    assert!(
        p_checks >= 300 && r_checks >= 300,
        "only {p_checks} comparisons on the primary and {r_checks} on the replica"
    );
    let i = rec_info(&mut p);
    assert!(num(&i, "rec_l1_hits") > 0, "the primary used L1: {i:?}");
    let ri = rec_info(&mut r);
    assert!(
        num(&ri, "rec_l1_hits") > 0 && num(&ri, "rec_l2_hits") > 0,
        "the replica used both tiers: {ri:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Early refresh
// ---------------------------------------------------------------------------------------------

#[test]
fn early_refresh_recomputes_hot_key_before_expiry() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 31, 50, 120, 3_000);
    let hot = active_users(&mut con, &wl, 20)[0].clone();
    config_set(&mut con, "rec.cache-ttl", "1");
    // The largest beta allowed: compute times are tens of microseconds, so XFetch needs a wide
    // window to fire before a 1 s key expires.
    config_set(&mut con, "rec.cache-beta", "100");
    assert!(is_err(&call(
        &mut con,
        &["CONFIG", "SET", "rec.cache-beta", "100.5"]
    )));

    let shape: &[&str] = &["COUNT", "50", "MAXPERCATEGORY", "0"];
    let run = |con: &mut Connection, d: Duration| -> (i64, i64) {
        let (mut n, mut computed) = (0, 0);
        let end = Instant::now() + d;
        while Instant::now() < end {
            let g = get(con, &hot, shape);
            assert!(!g.content.items.is_empty());
            n += 1;
            computed += i64::from(g.source == "computed");
        }
        (n, computed)
    };
    run(&mut con, Duration::from_millis(1_500));
    let before = rec_info(&mut con);
    let (n, computed) = run(&mut con, Duration::from_millis(3_000));
    let after = rec_info(&mut con);
    let d = |k: &str| num(&after, k) - num(&before, k);
    let (l1, l2, misses, early) = (
        d("rec_l1_hits"),
        d("rec_l2_hits"),
        d("rec_misses"),
        d("rec_early_refreshes"),
    );
    let report = format!(
        "{n} requests in 3 s: {computed} computed, l1 {l1}, l2 {l2}, misses {misses}, \
         early refreshes {early}"
    );
    eprintln!("{report}");
    assert!(
        num(&after, "rec_early_refreshes") > 0,
        "no early refresh: {report}"
    );
    // A list lives at most 1.1 s, so 3 s need at least two recomputations. (How early XFetch
    // fires scales with the measured compute time, which a loaded machine inflates, so there is
    // no tight upper bound; the miss ratio below bounds it.)
    assert!(computed >= 2, "recomputations: {report}");
    // An early refresh is counted as a miss here (the list is recomputed), so the requests that
    // found the key expired are the misses that were not early refreshes.
    let expired = if l1 + l2 + misses == n {
        misses - early
    } else {
        assert_eq!(
            l1 + l2 + misses + early,
            n,
            "counters do not add up: {report}"
        );
        misses
    };
    assert!(
        expired <= 1,
        "{expired} requests found the hot key expired (most refreshes must come early): {report}"
    );
    assert!(early >= computed - 1, "{report}");
    assert!(
        (misses as f64) < 0.01 * n as f64,
        "misses after warm-up: {report}"
    );
}

// ---------------------------------------------------------------------------------------------
// maxmemory with volatile-lru
// ---------------------------------------------------------------------------------------------

#[test]
fn maxmemory_evicts_cache_keys_never_user_state() {
    const BASE: usize = 2_000;
    const FLOOD: usize = 20_000;
    const WRITERS: usize = 100;
    let srv = Server::with_args(&["--maxmemory-policy", "volatile-lru"]);
    let mut con = srv.connection();
    let mut rng = Rng::new(99);
    let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..300 {
        cmds.push(args(&[
            "REC.ITEM.SET",
            &format!("item{i}"),
            "CATEGORY",
            &format!("cat{}", i % 12),
        ]));
    }
    let ts0 = now_ms() - 86_400_000;
    for u in 0..BASE {
        for k in 0..5 {
            let action = ["view", "click", "view", "add_to_cart", "purchase"][k];
            let item = format!("item{}", rng.skewed(300));
            let ts = (ts0 + (u * 5 + k) as i64).to_string();
            cmds.push(args(&[
                "REC.TRACK",
                &format!("u{u}"),
                &item,
                action,
                "TS",
                &ts,
            ]));
        }
    }
    run_all(&mut con, &cmds);
    let base: Vec<String> = (0..BASE).map(|u| format!("u{u}")).collect();
    let user_gets: Vec<Vec<Vec<u8>>> = base.iter().map(|u| args(&["REC.USER.GET", u])).collect();
    let snapshot = call_pipelined(&mut con, &user_gets);
    assert!(snapshot.iter().all(|v| *v != Value::Nil));

    let used = info_i64(&mut con, "memory", "used_memory");
    let limit = used + 2 * 1024 * 1024;
    config_set(&mut con, "maxmemory", &limit.to_string());

    let mut sent: HashMap<String, i64> = HashMap::new();
    let mut batch: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut oom = Vec::new();
    let mut errors = Vec::new();
    for i in 0..FLOOD {
        let u = if i % 10 == 0 {
            base[(i / 10) % BASE].clone()
        } else {
            format!("flood{i}")
        };
        batch.push(args(&["REC.GET", &u, "COUNT", "20", "WITHREASONS"]));
        if i % 20 == 0 {
            let w = format!("writer{}", (i / 20) % WRITERS);
            *sent.entry(w.clone()).or_default() += 1;
            let item = format!("item{}", rng.below(300));
            batch.push(args(&["REC.TRACK", &w, &item, "view"]));
        }
        if batch.len() >= 500 || i == FLOOD - 1 {
            for (c, v) in batch.iter().zip(call_pipelined(&mut con, &batch)) {
                if let Some(e) = err_text(&v) {
                    if c[0] == b"REC.TRACK" && e.starts_with("OOM") {
                        oom.push(show_cmd(c));
                    } else {
                        errors.push(format!("{} -> {e}", show_cmd(c)));
                    }
                }
            }
            batch.clear();
        }
    }
    let stats = info(&mut con, "stats");
    let mem = info(&mut con, "memory");
    let cache = rec_info(&mut con);
    let report = format!(
        "maxmemory {limit}, used_memory {}, evicted_keys {}, DBSIZE {}, rec_l1_entries {}, \
         rec_l1_bytes {}, rec_l2_keys {}",
        mem["used_memory"],
        stats["evicted_keys"],
        as_i64(&call(&mut con, &["DBSIZE"])),
        cache["rec_l1_entries"],
        cache["rec_l1_bytes"],
        cache["rec_l2_keys"],
    );
    eprintln!("{report}");
    assert!(
        oom.is_empty(),
        "{} REC.TRACK answered OOM (first: {}); {report}",
        oom.len(),
        oom[0]
    );
    assert!(
        errors.is_empty(),
        "{} errors (first: {}); {report}",
        errors.len(),
        errors[0]
    );
    let evicted: i64 = stats["evicted_keys"].parse().unwrap();
    assert!(evicted > 0, "no key evicted: {report}");
    // An evicted L2 key takes its L1 lists along (one request shape per user here).
    let cache_keys = as_i64(&call(&mut con, &["DBSIZE"])) - (BASE + WRITERS) as i64;
    assert!(
        num(&cache, "rec_l1_entries") <= cache_keys,
        "L1 keeps lists whose L2 key was evicted: {cache_keys} cache keys left; {report}"
    );

    config_set(&mut con, "maxmemory", "0");
    let now = call_pipelined(&mut con, &user_gets);
    for ((u, a), b) in base.iter().zip(&snapshot).zip(&now) {
        assert_eq!(
            a, b,
            "REC.USER.GET {u} changed under memory pressure; {report}"
        );
    }
    for (w, n) in &sent {
        let v = call(&mut con, &["REC.USER.GET", w]);
        assert_ne!(v, Value::Nil, "{w} lost; {report}");
        assert_eq!(as_i64(&field(&v, "events")), *n, "events of {w}; {report}");
    }
    let exists: Vec<Vec<Vec<u8>>> = base.iter().map(|u| args(&["PTTL", &user_key(u)])).collect();
    for (c, v) in exists.iter().zip(call_pipelined(&mut con, &exists)) {
        assert_eq!(v, Value::Int(-1), "{}: user keys carry no TTL", show_cmd(c));
    }
}

// ---------------------------------------------------------------------------------------------
// REC.GET_RO on a read-only replica
// ---------------------------------------------------------------------------------------------

#[test]
fn get_ro_on_read_only_replica_writes_nothing() {
    let primary = Server::start();
    let mut p = primary.connection();
    let wl = load_shop(&mut p, 77, 30, 40, 800);
    let users = active_users(&mut p, &wl, 3);
    let replica = Server::replica_of(&primary);
    let mut r = replica.connection();
    assert_eq!(
        call(&mut r, &["CONFIG", "GET", "replica-read-only"]),
        Value::Array(vec![
            Value::BulkString(b"replica-read-only".to_vec()),
            Value::BulkString(b"yes".to_vec())
        ])
    );

    // REC.GET on the replica is a write: refused.
    let v = call(&mut r, &["REC.GET", users[0].as_str()]);
    let e = err_text(&v).unwrap_or_else(|| panic!("REC.GET on a replica answered {v:?}"));
    assert!(e.starts_with("READONLY"), "REC.GET on a replica: {e}");

    // One user cached by the primary (its L2 key replicates), the others never asked there.
    let (shared, only_ro) = (&users[0], &users[1..6]);
    let on_primary = get(&mut p, shared, &[]);
    wait_replica_synced(&primary, &replica);
    let dbsize = as_i64(&call(&mut r, &["DBSIZE"]));
    let p_dbsize = as_i64(&call(&mut p, &["DBSIZE"]));
    let offset = info_i64(&mut p, "replication", "master_repl_offset");

    let g = rget(&mut r, "REC.GET_RO", shared, &[], false);
    assert_eq!(g.source, "l2", "the primary's L2 list, read on the replica");
    assert_eq!(g.content, on_primary.content);
    let g = rget(&mut r, "REC.GET_RO", shared, &[], false);
    assert_eq!(g.source, "l1");
    assert_eq!(g.content, on_primary.content);

    for u in only_ro {
        for shape in [&[][..], &["COUNT", "3", "MODEL", "m1"][..]] {
            let first = rget(&mut r, "REC.GET_RO", u, shape, false);
            assert_eq!(
                first.source, "computed",
                "REC.GET_RO {u} {shape:?} on the replica"
            );
            let second = rget(&mut r, "REC.GET_RO", u, shape, false);
            assert_eq!(second.source, "l1", "REC.GET_RO {u} {shape:?} again");
            assert_eq!(second.content, first.content);
            let fresh = rget(&mut r, "REC.GET_RO", u, shape, true);
            assert_eq!(fresh.source, "computed");
            assert_eq!(fresh.content, first.content);
            // Same state, same list as the primary computes.
            let pn = rget(&mut p, "REC.GET_RO", u, shape, true);
            assert_eq!(
                pn.content, first.content,
                "{u} {shape:?}: replica vs primary"
            );
        }
        assert_eq!(
            call(&mut r, &["EXISTS", &cache_key(u)]),
            Value::Int(0),
            "REC.GET_RO created {} on the replica",
            cache_key(u)
        );
        assert_eq!(
            call(&mut p, &["EXISTS", &cache_key(u)]),
            Value::Int(0),
            "REC.GET_RO created {} on the primary",
            cache_key(u)
        );
    }
    assert_eq!(as_i64(&call(&mut r, &["DBSIZE"])), dbsize, "replica DBSIZE");
    assert_eq!(
        as_i64(&call(&mut p, &["DBSIZE"])),
        p_dbsize,
        "primary DBSIZE"
    );
    assert_eq!(
        info_i64(&mut p, "replication", "master_repl_offset"),
        offset,
        "REC.GET_RO on the primary replicated something"
    );
    let ri = rec_info(&mut r);
    assert_eq!(num(&ri, "rec_fills"), 0, "fills on the replica: {ri:?}");
    assert!(num(&ri, "rec_l1_hits") >= 11 && num(&ri, "rec_l2_hits") >= 1);
    assert!(num(&ri, "rec_misses") >= 10);
}

// ---------------------------------------------------------------------------------------------
// INFO rec
// ---------------------------------------------------------------------------------------------

#[test]
fn info_cache_fields_follow_requests_and_invalidations() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 3, 20, 30, 600);
    let users = active_users(&mut con, &wl, 3);
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    let i0 = rec_info(&mut con);
    for k in [
        "rec_l1_hits",
        "rec_l2_hits",
        "rec_misses",
        "rec_early_refreshes",
        "rec_invalidations_user",
        "rec_invalidations_event",
        "rec_invalidations_item",
        "rec_invalidations_all",
        "rec_l1_entries",
        "rec_l2_keys",
    ] {
        assert_eq!(num(&i0, k), 0, "{k} on a fresh server");
    }
    assert_eq!(fnum(&i0, "rec_hit_rate"), 0.0);

    let step =
        |con: &mut Connection, what: &str, prev: &HashMap<String, String>, want: &[(&str, i64)]| {
            let now = rec_info(con);
            for (k, dv) in want {
                assert_eq!(
                    num(&now, k) - num(prev, k),
                    *dv,
                    "{what}: change of {k} (before {}, after {})",
                    prev[*k],
                    now[*k]
                );
            }
            now
        };

    get(&mut con, a, &[]);
    let i1 = step(
        &mut con,
        "miss",
        &i0,
        &[
            ("rec_misses", 1),
            ("rec_l1_hits", 0),
            ("rec_l1_entries", 1),
            ("rec_l2_keys", 1),
        ],
    );
    assert_eq!(fnum(&i1, "rec_hit_rate"), 0.0);
    assert!(num(&i1, "rec_l1_bytes") > 0);

    get(&mut con, a, &[]);
    let i2 = step(
        &mut con,
        "L1 hit",
        &i1,
        &[("rec_l1_hits", 1), ("rec_misses", 0)],
    );
    assert!(
        (fnum(&i2, "rec_hit_rate") - 0.5).abs() < 1e-9,
        "{:?}",
        i2["rec_hit_rate"]
    );

    get(&mut con, a, &["COUNT", "4"]);
    let i3 = step(
        &mut con,
        "second shape",
        &i2,
        &[("rec_misses", 1), ("rec_l1_entries", 1), ("rec_l2_keys", 0)],
    );

    // A one-user L1: asking for b pushes a out, so a comes from L2.
    config_set(&mut con, "rec.l1-size", "1");
    get(&mut con, b, &[]);
    let g = get(&mut con, a, &[]);
    assert_eq!(g.source, "l2");
    let i4 = step(
        &mut con,
        "L2 hit",
        &i3,
        &[("rec_misses", 1), ("rec_l2_hits", 1), ("rec_l2_keys", 1)],
    );
    assert_eq!(num(&i4, "rec_l1_entries"), 1, "one user, one shape in L1");
    let rate = 2.0 / 5.0;
    assert!(
        (fnum(&i4, "rec_hit_rate") - rate).abs() < 1e-9,
        "{:?}",
        i4["rec_hit_rate"]
    );
    config_set(&mut con, "rec.l1-size", "10000");

    get(&mut con, b, &[]); // from L2 (L1 holds a)
    get(&mut con, c, &[]);
    let i5 = step(
        &mut con,
        "refill",
        &i4,
        &[("rec_l2_hits", 1), ("rec_misses", 1), ("rec_l2_keys", 1)],
    );
    assert_eq!(num(&i5, "rec_l1_entries"), 3);
    assert_eq!(num(&i5, "rec_l2_keys"), 3);

    assert_eq!(call(&mut con, &["REC.INVALIDATE", a]), Value::Int(2));
    let i6 = step(
        &mut con,
        "INVALIDATE user",
        &i5,
        &[
            ("rec_invalidations_user", 1),
            ("rec_l1_entries", -1),
            ("rec_l2_keys", -1),
        ],
    );

    let list = get(&mut con, b, &[]).content;
    assert_ok(&call(
        &mut con,
        &["REC.TRACK", b, &list.items[0].id, "purchase"],
    ));
    let i7 = step(
        &mut con,
        "purchase",
        &i6,
        &[
            ("rec_l1_hits", 1),
            ("rec_invalidations_event", 1),
            ("rec_l1_entries", -1),
            ("rec_l2_keys", -1),
        ],
    );

    let list = get(&mut con, c, &[]).content;
    assert_eq!(
        call(&mut con, &["REC.INVALIDATE", "ITEM", &list.items[0].id]),
        Value::Int(1)
    );
    let i8 = step(
        &mut con,
        "INVALIDATE ITEM",
        &i7,
        &[
            ("rec_l1_hits", 1),
            ("rec_invalidations_item", 1),
            ("rec_l1_entries", -1),
            ("rec_l2_keys", 0),
        ],
    );
    let g = get(&mut con, c, &[]);
    assert_eq!(
        g.source, "computed",
        "c's L2 list holds the invalidated item"
    );
    let i9 = step(
        &mut con,
        "stale L2",
        &i8,
        &[("rec_misses", 1), ("rec_l2_hits", 0)],
    );

    get(&mut con, a, &[]);
    let i10 = step(&mut con, "refill a", &i9, &[("rec_misses", 1)]);
    assert_eq!(num(&i10, "rec_l1_entries"), 2);
    assert_eq!(num(&i10, "rec_l2_keys"), 2);
    assert_eq!(call(&mut con, &["REC.INVALIDATE", "ALL"]), Value::Int(2));
    step(
        &mut con,
        "INVALIDATE ALL",
        &i10,
        &[
            ("rec_invalidations_all", 1),
            ("rec_l1_entries", -2),
            ("rec_l2_keys", 0),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// L1 follows L2: DEL, expiry, FLUSHALL
// ---------------------------------------------------------------------------------------------

#[test]
fn l2_key_del_expiry_and_flushall_drop_l1() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 8, 10, 20, 300);
    let u = active_users(&mut con, &wl, 3)[0].clone();
    let key = cache_key(&u);

    get(&mut con, &u, &[]);
    assert_eq!(get(&mut con, &u, &[]).source, "l1");
    let before = info_i64(&mut con, "rec", "rec_l1_dropped_by_keyspace");
    assert_eq!(call(&mut con, &["DEL", &key]), Value::Int(1));
    assert_eq!(
        get(&mut con, &u, &[]).source,
        "computed",
        "DEL {key} must drop the L1 lists"
    );
    assert_eq!(
        info_i64(&mut con, "rec", "rec_l1_dropped_by_keyspace"),
        before + 1
    );

    // An expired key (here shortened by hand) takes its L1 lists with it.
    assert_eq!(get(&mut con, &u, &[]).source, "l1");
    assert_eq!(info_i64(&mut con, "stats", "expired_keys"), 0);
    assert_eq!(call(&mut con, &["PEXPIRE", &key, "1"]), Value::Int(1));
    // Wait for Redis's active expiry (INFO does not touch the key, so this is not a lazy expiry).
    let deadline = Instant::now() + Duration::from_secs(5);
    while info_i64(&mut con, "stats", "expired_keys") == 0 {
        assert!(Instant::now() < deadline, "{key} never expired");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        get(&mut con, &u, &[]).source,
        "computed",
        "after {key} expired, its L1 lists must be gone"
    );

    assert_eq!(get(&mut con, &u, &[]).source, "l1");
    assert_ok(&call(&mut con, &["FLUSHALL"]));
    assert_eq!(
        info_i64(&mut con, "rec", "rec_l1_entries"),
        0,
        "FLUSHALL empties L1"
    );
    let g = get(&mut con, &u, &[]);
    assert_eq!(g.source, "computed");
    assert_eq!(g.content.model, "popular", "FLUSHALL forgot the user");
}

// ---------------------------------------------------------------------------------------------
// Ids with braces (tagged and hashed key forms), and the cache configs
// ---------------------------------------------------------------------------------------------

#[test]
fn cache_keys_of_ids_with_braces() {
    let srv = Server::start();
    let mut con = srv.connection();
    load_shop(&mut con, 13, 20, 30, 500);
    // Tagged (`a{b}c` hashes as `b`, sharing the tag with `x{b}y`) and hashed (`a}b`, `{}x`).
    let ids = ["a{b}c", "x{b}y", "a}b", "{}x", "plain"];
    for id in ids {
        for it in ["item1", "item2", "item3"] {
            assert_ok(&call(&mut con, &["REC.TRACK", id, it, "view"]));
        }
    }
    // Hashed-form keys end in solved binary bytes: handle key names as bytes.
    let keys_of = |con: &mut Connection| -> BTreeSet<Vec<u8>> {
        as_array(&call(con, &["KEYS", "*"]))
            .iter()
            .map(as_bytes)
            .collect()
    };
    let on_key = |con: &mut Connection, cmd: &str, key: &[u8]| -> Value {
        call(con, &[cmd.as_bytes(), key])
    };
    let mut cache_keys: HashMap<&str, Vec<u8>> = HashMap::new();
    for id in ids {
        let before = keys_of(&mut con);
        assert_eq!(get(&mut con, id, &[]).source, "computed", "{id}");
        let new: Vec<Vec<u8>> = keys_of(&mut con).difference(&before).cloned().collect();
        assert_eq!(new.len(), 1, "REC.GET {id} created {new:?}");
        assert!(
            as_i64(&on_key(&mut con, "PTTL", &new[0])) > 0,
            "{id}: {:?} has a TTL",
            String::from_utf8_lossy(&new[0])
        );
        cache_keys.insert(id, new[0].clone());
        assert_eq!(get(&mut con, id, &[]).source, "l1", "{id}");
    }
    let i = rec_info(&mut con);
    assert_eq!(num(&i, "rec_l2_keys"), ids.len() as i64);

    // REC.INVALIDATE of one id leaves the one sharing its tag alone.
    assert_eq!(call(&mut con, &["REC.INVALIDATE", "a{b}c"]), Value::Int(1));
    assert_eq!(get(&mut con, "a{b}c", &[]).source, "computed");
    assert_eq!(get(&mut con, "x{b}y", &[]).source, "l1");
    // A DEL of any form of cache key drops that id's L1 lists (keyspace events).
    for id in ids {
        assert_eq!(on_key(&mut con, "DEL", &cache_keys[id]), Value::Int(1));
        assert_eq!(
            get(&mut con, id, &[]).source,
            "computed",
            "DEL {:?} must drop the L1 lists of {id}",
            String::from_utf8_lossy(&cache_keys[id])
        );
    }
    let i = rec_info(&mut con);
    assert_eq!(num(&i, "rec_l2_keys"), ids.len() as i64);
    // An invalidating event of a hashed-form id.
    assert_eq!(get(&mut con, "a}b", &[]).source, "l1");
    assert_ok(&call(&mut con, &["REC.TRACK", "a}b", "item9", "purchase"]));
    assert_eq!(
        on_key(&mut con, "EXISTS", &cache_keys["a}b"]),
        Value::Int(0)
    );
    assert_eq!(get(&mut con, "a}b", &[]).source, "computed");
}

#[test]
fn cache_ttl_zero_and_l1_off() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 17, 10, 20, 300);
    let u = active_users(&mut con, &wl, 3)[0].clone();

    // L1 off: L2 only.
    config_set(&mut con, "rec.l1-size", "0");
    let first = get(&mut con, &u, &[]);
    assert_eq!(first.source, "computed");
    for _ in 0..3 {
        let g = get(&mut con, &u, &[]);
        assert_eq!(g.source, "l2", "with rec.l1-size 0");
        assert_eq!(g.content, first.content);
    }
    assert_eq!(info_i64(&mut con, "rec", "rec_l1_entries"), 0);
    config_set(&mut con, "rec.l1-size", "10000");
    assert_eq!(get(&mut con, &u, &[]).source, "l2");
    assert_eq!(get(&mut con, &u, &[]).source, "l1");

    // TTL 0: no caching at all, and no cache key written.
    config_set(&mut con, "rec.cache-ttl", "0");
    assert_eq!(call(&mut con, &["REC.INVALIDATE", "ALL"]), Value::Int(1));
    assert_eq!(call(&mut con, &["DEL", &cache_key(&u)]), Value::Int(1));
    let dbsize = as_i64(&call(&mut con, &["DBSIZE"]));
    for _ in 0..3 {
        let g = get(&mut con, &u, &[]);
        assert_eq!(g.source, "computed", "with rec.cache-ttl 0");
        assert_eq!(g.content, first.content);
    }
    assert_eq!(as_i64(&call(&mut con, &["DBSIZE"])), dbsize);
    assert_eq!(call(&mut con, &["EXISTS", &cache_key(&u)]), Value::Int(0));
}

/// rec_l2_keys (and REC.INVALIDATE ALL, which reports it) count cache keys only, also after
/// loading an RDB, even when a user id makes its *user* key look like a cache key's name.
#[test]
fn l2_key_count_ignores_user_keys_that_look_like_cache_keys() {
    let srv = Server::start();
    let mut con = srv.connection();
    // User keys: rec:{b}:u:a{b}:c, rec:{t}:u:z{t}:c:x, rec:{plain}:u.
    for id in ["a{b}:c", "z{t}:c:x", "plain"] {
        assert_ok(&call(&mut con, &["REC.TRACK", id, "item1", "view"]));
    }
    get(&mut con, "plain", &[]);
    assert_eq!(info_i64(&mut con, "rec", "rec_l2_keys"), 1);
    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert_eq!(as_i64(&call(&mut con, &["DBSIZE"])), 4);
    assert_eq!(
        info_i64(&mut con, "rec", "rec_l2_keys"),
        1,
        "one cache key (rec:{{plain}}:c) after DEBUG RELOAD"
    );
    assert_eq!(
        call(&mut con, &["REC.INVALIDATE", "ALL"]),
        Value::Int(1),
        "REC.INVALIDATE ALL after DEBUG RELOAD: one L2 key, no L1 list"
    );
}

// ---------------------------------------------------------------------------------------------
// Experiments: the arm's model decides the cached list
// ---------------------------------------------------------------------------------------------

#[test]
fn experiment_lists_follow_the_arm_model() {
    let srv = Server::start();
    let mut con = srv.connection();
    let wl = load_shop(&mut con, 41, 30, 40, 1_000);
    let users = active_users(&mut con, &wl, 5);
    let exp: &[&str] = &["EXPERIMENT", "e"];
    let create = |con: &mut Connection, a: &str, b: &str| {
        let c = [
            "REC.EXPERIMENT.CREATE",
            "e",
            "ARMS",
            "a",
            a,
            "50",
            "b",
            b,
            "50",
        ];
        assert_eq!(call(con, &c), Value::Int(1), "{c:?}");
    };
    create(&mut con, "m1", "m2");
    let arm_model = |arm: &str, a: &str, b: &str| if arm == "a" { a } else { b }.to_string();
    let mut arms = HashMap::new();
    for u in users.iter().take(6) {
        let c = get_cmd("REC.GET", u, exp, false);
        let v = call(&mut con, &c);
        let first = parse_got(&c, &v);
        let arm = as_str(&field(&v, "arm"));
        let v2 = call(&mut con, &c);
        let second = parse_got(&c, &v2);
        assert_eq!(second.source, "l1", "{u}: second REC.GET EXPERIMENT e");
        assert_eq!(
            as_str(&field(&v2, "arm")),
            arm,
            "{u}: split arms are sticky"
        );
        assert_eq!(second.content, first.content);
        let m = arm_model(&arm, "m1", "m2");
        let direct = get_nocache(&mut con, u, &["MODEL", &m]);
        assert_eq!(direct.content, first.content, "{u}: arm {arm} serves {m}");
        arms.insert(u.clone(), arm);
    }
    assert!(
        users.iter().take(6).any(|u| {
            get_nocache(&mut con, u, &["MODEL", "m1"]).content
                != get_nocache(&mut con, u, &["MODEL", "m2"]).content
        }),
        "m1 and m2 give the same lists: swapping the arms would prove nothing"
    );
    // The same experiment name with the models swapped: no list of the old arm model is served.
    assert_eq!(call(&mut con, &["REC.EXPERIMENT.DEL", "e"]), Value::Int(1));
    create(&mut con, "m2", "m1");
    for u in users.iter().take(6) {
        let c = get_cmd("REC.GET", u, exp, false);
        let v = call(&mut con, &c);
        let g = parse_got(&c, &v);
        let arm = as_str(&field(&v, "arm"));
        assert_eq!(arm, arms[u], "{u}: same name, seed and weights, same arm");
        let m = arm_model(&arm, "m2", "m1");
        let direct = get_nocache(&mut con, u, &["MODEL", &m]);
        assert_eq!(
            g.content, direct.content,
            "{u}: after the arms were swapped, arm {arm} must serve {m} (source {})",
            g.source
        );
    }
}
