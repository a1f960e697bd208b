//! State survives DEBUG RELOAD, RDB restarts and AOF restarts; FLUSHALL clears node-wide state;
//! a corrupt RDB is refused without a crash.

mod common;

use std::fs;

use common::*;
use redis::{Connection, Value};

fn workload(seed: u64, events: usize) -> Workload {
    let mut rng = Rng::new(seed);
    let mut w = Workload::new(300, 200);
    w.setup(&mut rng);
    w.events(&mut rng, events, 0.3);
    w
}

fn digest(con: &mut Connection, w: &Workload) -> Vec<String> {
    let (users, items) = w.sample(40);
    state_digest(con, &users, &items)
}

#[test]
fn debug_reload_and_rdb_restart() {
    let mut srv = Server::start();
    let mut con = srv.connection();
    let w = workload(1, 4000);
    run_all(&mut con, &w.commands);
    // Tune a built-in too.
    assert_eq!(
        call(&mut con, &["REC.MODEL.SET", "default", "AFFINITY", "0.75"]),
        Value::Int(0)
    );
    let before = digest(&mut con, &w);
    assert!(before.len() > 100);
    assert_digest_meaningful(&before);
    let dbsize = as_i64(&call(&mut con, &["DBSIZE"]));
    assert!(dbsize > 100, "users have keys: {dbsize}");

    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert_digest_eq(&before, &digest(&mut con, &w), "after DEBUG RELOAD");
    // Twice, to catch state that only survives one round trip.
    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert_digest_eq(
        &before,
        &digest(&mut con, &w),
        "after a second DEBUG RELOAD",
    );

    assert_ok(&call(&mut con, &["SAVE"]));
    srv.restart();
    let mut con = srv.connection();
    assert_digest_eq(&before, &digest(&mut con, &w), "after restart from RDB");

    // The restored state keeps learning, and that survives too.
    let mut rng = Rng::new(99);
    let extra: Vec<Vec<Vec<u8>>> = (0..500)
        .map(|_| {
            let mut c = w.track(&mut rng, 0.0);
            if let Some(p) = c.iter().position(|a| a == b"REC") {
                c.truncate(p);
            }
            c.extend(args(&["TS", "1700000000000"]));
            c
        })
        .collect();
    run_all(&mut con, &extra);
    let after_more = digest(&mut con, &w);
    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert_digest_eq(
        &after_more,
        &digest(&mut con, &w),
        "DEBUG RELOAD after more events",
    );
}

#[test]
fn aof_restart() {
    let mut srv = Server::with_args(&["--appendonly", "yes"]);
    let mut con = srv.connection();
    let w = workload(2, 3000);
    let half = w.commands.len() / 2;
    run_all(&mut con, &w.commands[..half]);
    let mid = digest(&mut con, &w);

    // Rewrite (RDB preamble with the module's aux data), then more writes for the AOF tail.
    assert!(!is_err(&call(&mut con, &["BGREWRITEAOF"])));
    wait_persistence_idle(&mut con);
    run_all(&mut con, &w.commands[half..]);
    assert_eq!(
        call(&mut con, &["REC.MODEL.SET", "tail", "COOC", "0.3"]),
        Value::Int(1)
    );
    let before = digest(&mut con, &w);
    assert_digest_meaningful(&before);
    assert_ne!(mid, before, "the tail changed something");

    srv.restart();
    let mut con = srv.connection();
    assert_eq!(info(&mut con, "persistence")["aof_enabled"], "1");
    assert_digest_eq(&before, &digest(&mut con, &w), "after restart from AOF");

    // And once more without a rewrite in between: preamble + a longer tail.
    let mut rng = Rng::new(77);
    let mut w2 = workload(2, 0);
    w2.commands.clear();
    w2.events(&mut rng, 1000, 0.2);
    run_all(&mut con, &w2.commands);
    let before2 = digest(&mut con, &w);
    srv.restart();
    let mut con = srv.connection();
    assert_digest_eq(
        &before2,
        &digest(&mut con, &w),
        "after second restart from AOF",
    );

    // A rewrite right before the restart: everything in the preamble.
    assert!(!is_err(&call(&mut con, &["BGREWRITEAOF"])));
    wait_persistence_idle(&mut con);
    srv.restart();
    let mut con = srv.connection();
    assert_digest_eq(&before2, &digest(&mut con, &w), "after rewrite and restart");
}

/// Keys of the module's user type.
fn user_keys(con: &mut Connection) -> Vec<Vec<u8>> {
    let all: Vec<Vec<u8>> = as_array(&call(con, &["KEYS", "*"]))
        .iter()
        .map(as_bytes)
        .collect();
    all.into_iter()
        .filter(|k| as_str(&call(con, &[b"TYPE".as_slice(), k])) == "RecUserSt")
        .collect()
}

/// Serves recommendations to the first users, so L1/L2 caches hold lists that a flush must drop.
fn warm_caches(con: &mut Connection, w: &Workload) {
    for u in w.users.iter().take(50) {
        for _ in 0..2 {
            let r = call(con, &["REC.GET", u]);
            assert!(!is_err(&r), "{r:?}");
        }
    }
}

/// Everything the module knows is gone. `empty_db`: DBSIZE must be 0 (right after a flush;
/// later, recommendation caches written by this check itself may exist).
fn assert_cleared(con: &mut Connection, w: &Workload, what: &str, empty_db: bool) {
    if empty_db {
        assert_eq!(as_i64(&call(con, &["DBSIZE"])), 0, "{what}");
    }
    assert!(user_keys(con).is_empty(), "{what}: user keys survived");
    assert!(
        ids(&call(con, &["REC.POPULAR", "COUNT", "100"])).is_empty(),
        "{what}: REC.POPULAR not empty"
    );
    for c in &w.categories {
        assert!(
            ids(&call(con, &["REC.POPULAR", "CATEGORY", c])).is_empty(),
            "{what}: {c}"
        );
    }
    for it in w.items.iter().take(50) {
        assert_eq!(
            call(con, &["REC.ITEM.GET", it]),
            Value::Nil,
            "{what}: {it} survived"
        );
        assert!(
            ids(&call(con, &["REC.SIMILAR", it])).is_empty(),
            "{what}: {it} neighbours"
        );
    }
    for u in w.users.iter().take(50) {
        assert_eq!(
            call(con, &["REC.USER.GET", u]),
            Value::Nil,
            "{what}: {u} survived"
        );
        // Caches allowed: a cached list from before the flush must not be served.
        for cmd in ["REC.GET", "REC.GET_RO"] {
            let r = call(con, &[cmd, u]);
            assert!(rec_ids(&r).is_empty(), "{what}: {cmd} {u} -> {r:?}");
            assert_eq!(as_str(&field(&r, "model")), "popular", "{what}");
        }
    }
    assert_eq!(
        ids(&call(con, &["REC.MODEL.LIST"])),
        ["default", "popular"],
        "{what}: custom models survived"
    );
}

#[test]
fn flushall_clears_node_state() {
    let srv = Server::start();
    let mut con = srv.connection();
    let w = workload(3, 2000);
    run_all(&mut con, &w.commands);
    assert!(!ids(&call(&mut con, &["REC.POPULAR"])).is_empty());
    warm_caches(&mut con, &w);

    assert_ok(&call(&mut con, &["FLUSHALL"]));
    assert_cleared(&mut con, &w, "after FLUSHALL", true);
    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert_cleared(&mut con, &w, "after FLUSHALL + DEBUG RELOAD", false);

    // FLUSHDB too (single db), and the module keeps working afterwards.
    run_all(&mut con, &w.commands[..500]);
    assert!(!ids(&call(&mut con, &["REC.POPULAR"])).is_empty());
    warm_caches(&mut con, &w);
    assert_ok(&call(&mut con, &["FLUSHDB"]));
    assert_cleared(&mut con, &w, "after FLUSHDB", true);
    run_all(&mut con, &w.commands[..500]);
    warm_caches(&mut con, &w);
    assert_ok(&call(&mut con, &["FLUSHALL", "ASYNC"]));
    assert_cleared(&mut con, &w, "after FLUSHALL ASYNC", true);
    assert_ok(&call(&mut con, &["REC.TRACK", "u", "i", "view"]));
    assert_eq!(ids(&call(&mut con, &["REC.POPULAR"])), ["i"]);
}

#[test]
fn corrupt_rdb_is_refused_without_crash() {
    let mut srv = Server::start();
    let mut con = srv.connection();
    let w = workload(4, 3000);
    run_all(&mut con, &w.commands);
    let before = digest(&mut con, &w);
    assert_ok(&call(&mut con, &["SAVE"]));
    drop(con);
    srv.stop();
    let good = fs::read(srv.dir.join("dump.rdb")).unwrap();
    assert!(good.len() > 1000, "dump.rdb is {} bytes", good.len());

    // The intact file loads.
    let dir = temp_dir("rdb-good");
    fs::write(dir.join("dump.rdb"), &good).unwrap();
    let ok = Server::start_in(dir, vec![]);
    let mut c = ok.connection();
    assert_digest_eq(
        &before,
        &digest(&mut c, &w),
        "dump.rdb copied to a new server",
    );
    assert!(as_i64(&call(&mut c, &["DBSIZE"])) > 0);
    drop(ok);

    let n = good.len();
    let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
    for frac in [0.5, 0.1, 0.25, 0.75, 0.9] {
        let cut = (n as f64 * frac) as usize;
        variants.push((
            format!("truncated to {cut} of {n} bytes"),
            good[..cut].to_vec(),
        ));
    }
    variants.push(("without its checksum".into(), good[..n - 8].to_vec()));
    variants.push(("without EOF and checksum".into(), good[..n - 9].to_vec()));
    let mut rng = Rng::new(5);
    for frac in [0.5, 0.05, 0.15, 0.3, 0.6, 0.8, 0.95] {
        let at = ((n as f64 * frac) as usize).clamp(9, n - 9);
        let mut v = good.clone();
        for b in &mut v[at..(at + 4).min(n - 8)] {
            *b ^= 0xff;
        }
        variants.push((format!("bytes flipped at {at}"), v));
    }
    for _ in 0..4 {
        let at = rng.range(9, n as i64 - 17) as usize;
        let mut v = good.clone();
        let len = rng.range(1, 8) as usize;
        for b in &mut v[at..at + len] {
            *b = rng.next_u64() as u8;
        }
        if v != good {
            variants.push((format!("{len} random bytes at {at}"), v));
        }
    }
    // Module data cut short inside a valid-looking file: half, then the original tail.
    let mut spliced = good[..n / 2].to_vec();
    spliced.extend_from_slice(&good[n - 9..]);
    variants.push(("middle removed".into(), spliced));

    // Try every variant, then report all that crashed.
    let mut crashes = Vec::new();
    for (what, bytes) in &variants {
        let dir = temp_dir("rdb-bad");
        fs::write(dir.join("dump.rdb"), bytes).unwrap();
        let (status, log) = expect_start_failure(&dir, &[]);
        assert!(!status.success(), "dump.rdb {what}: exited with success");
        if looks_like_crash(&status, &log) {
            let why = log
                .lines()
                .find(|l| {
                    l.contains("Guru Meditation")
                        || l.contains("panicked")
                        || l.contains("crashed by")
                })
                .unwrap_or("")
                .to_string();
            crashes.push(format!("{what}: {status}: {why}"));
        }
        let _ = fs::remove_dir_all(&dir);
    }
    assert!(
        crashes.is_empty(),
        "{} of {} corrupt dump.rdb variants crashed redis-server instead of a clean refusal:\n{}",
        crashes.len(),
        variants.len(),
        crashes.join("\n")
    );
}
