//! Hostile input: many random argument vectors across every REC.* command. The server never
//! crashes or hangs, and a command that fails changes nothing.

mod common;

use common::*;
use redis::{Connection, Value};

const DOCUMENTED: &[&str] = &[
    "REC.ITEM.SET",
    "REC.ITEM.GET",
    "REC.ITEM.DEL",
    "REC.TRACK",
    "REC.GET",
    "REC.GET_RO",
    "REC.SIMILAR",
    "REC.POPULAR",
    "REC.USER.GET",
    "REC.USER.SET",
    "REC.USER.DEL",
    "REC.MODEL.SET",
    "REC.MODEL.GET",
    "REC.MODEL.LIST",
    "REC.MODEL.DEL",
    // In DESIGN.md, maybe not implemented yet: then "unknown command", which is fine too.
    "REC.INVALIDATE",
    "REC.EXPERIMENT.CREATE",
    "REC.EXPERIMENT.GET",
    "REC.EXPERIMENT.LIST",
    "REC.EXPERIMENT.STOP",
    "REC.EXPERIMENT.DEL",
    "REC.EXPERIMENT.STATS",
    "REC.ASSIGN",
    "REC.SAMPLESIZE",
    "REC.METRICS",
];

const KEYWORDS: &[&str] = &[
    "COUNT",
    "MODEL",
    "EXPERIMENT",
    "CATEGORY",
    "EXCLUDE",
    "MAXPERCATEGORY",
    "WITHSCORES",
    "WITHREASONS",
    "NOCACHE",
    "VALUE",
    "TS",
    "REC",
    "TAGS",
    "CREATED",
    "AVAILABLE",
    "PROPS",
    "COOC",
    "AFFINITY",
    "POPULARITY",
    "RECENCY",
    "ITEM",
    "ALL",
    "POLICY",
    "SEED",
    "COVERAGE",
    "ARMS",
    "ALPHA",
    "POWER",
    "split",
    "thompson",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "5",
    "10",
    "100",
    "101",
    "-1",
    "-0",
    "0.5",
    "1.5",
    "1e3",
    "1e308",
    "-1e308",
    "1e400",
    "1e-400",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "+inf",
    "infinity",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999",
    "0x10",
    " 1",
    "1 ",
    "1\0",
    "",
    "١",
    "1_000",
    "4294967296",
    "65536",
    "1000000",
];

const ACTIONS: &[&str] = &[
    "view",
    "click",
    "add_to_cart",
    "purchase",
    "rating",
    "dislike",
    "VIEW",
    "unknown",
];

const USERS: &[&str] = &["u0", "u1", "u2", "u3", "u4", "u5"];
const ITEMS: &[&str] = &["i0", "i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8", "i9"];
const CATEGORIES: &[&str] = &["c0", "c1", "c2"];

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    const SPECIAL: &[u8] = b"{}\0\r\n,:\"\\ []%$*-+.";
    let len = rng.below(40) as usize;
    (0..len)
        .map(|_| {
            if rng.chance(0.4) {
                *rng.pick(SPECIAL)
            } else {
                rng.next_u64() as u8
            }
        })
        .collect()
}

fn json(rng: &mut Rng) -> Vec<u8> {
    let deep = |n: usize, o: &str, c: &str| format!("{}{}", o.repeat(n), c.repeat(n));
    let choices = [
        "{}".to_string(),
        r#"{"a":1}"#.to_string(),
        r#"{"a":1e999}"#.to_string(),
        "{".to_string(),
        "[1]".to_string(),
        "null".to_string(),
        r#"{"a":"\ud800"}"#.to_string(),
        format!("{{\"a\":{}}}", deep(100, "[", "]")),
        format!("{{\"a\":{}}}", deep(5000, "[", "]")),
        format!("{{\"a\":\"{}\"}}", "x".repeat(5000)),
        format!(
            "{{{}}}",
            (0..300)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    rng.pick(&choices).clone().into_bytes()
}

fn rec_id(rng: &mut Rng) -> Vec<u8> {
    let choices = [
        format!("r1:{}:default", now_ms()),
        "r1:1700000000000:popular".to_string(),
        "r1:".to_string(),
        "r1::".to_string(),
        "r1:-5:default".to_string(),
        "r1:99999999999999999999:default".to_string(),
        "r2:1:default".to_string(),
        "r1:1:nosuch".to_string(),
        "r1:1:bad name".to_string(),
        "r1:abc:default".to_string(),
    ];
    rng.pick(&choices).clone().into_bytes()
}

fn mixed_case(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if rng.chance(0.3) {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}

fn token(rng: &mut Rng) -> Vec<u8> {
    match rng.below(20) {
        0..=3 => {
            let k = rng.clone_pick(KEYWORDS);
            mixed_case(rng, k).into_bytes()
        }
        4..=7 => rng.clone_pick(NUMBERS).as_bytes().to_vec(),
        8..=9 => rng.clone_pick(ITEMS).as_bytes().to_vec(),
        10 => rng.clone_pick(USERS).as_bytes().to_vec(),
        11 => rng.clone_pick(ACTIONS).as_bytes().to_vec(),
        12 => rng.clone_pick(CATEGORIES).as_bytes().to_vec(),
        13 => json(rng),
        14 => rec_id(rng),
        15 => {
            let n = *rng.pick(&[0usize, 1, 255, 256, 257, 1024, 1025, 70_000]);
            vec![b'x'; n]
        }
        16 => {
            let ts = now_ms() + rng.range(-40 * 86_400_000, 3 * 86_400_000);
            ts.to_string().into_bytes()
        }
        17 => format!("t{},t{},,t{{}}", rng.below(5), rng.below(5)).into_bytes(),
        _ => random_bytes(rng),
    }
}

trait ClonePick {
    fn clone_pick(&mut self, xs: &[&'static str]) -> &'static str;
}

impl ClonePick for Rng {
    fn clone_pick(&mut self, xs: &[&'static str]) -> &'static str {
        xs[self.index(xs.len())]
    }
}

/// A random argument vector for `name`: either shaped like the real syntax with bad values, or
/// entirely random tokens (wrong arity included).
fn hostile(rng: &mut Rng, name: &str) -> Vec<Vec<u8>> {
    let mut c = vec![mixed_case(rng, name).into_bytes()];
    if rng.chance(0.5) {
        let n = rng.below(9) as usize;
        for _ in 0..n {
            c.push(token(rng));
        }
        return c;
    }
    // Shaped: the positional arguments, then keyword/value pairs.
    let user = |rng: &mut Rng| -> Vec<u8> {
        if rng.chance(0.7) {
            rng.clone_pick(USERS).as_bytes().to_vec()
        } else {
            token(rng)
        }
    };
    let item = |rng: &mut Rng| -> Vec<u8> {
        if rng.chance(0.7) {
            rng.clone_pick(ITEMS).as_bytes().to_vec()
        } else {
            token(rng)
        }
    };
    match name {
        "REC.TRACK" => {
            c.push(user(rng));
            c.push(item(rng));
            c.push(if rng.chance(0.7) {
                rng.clone_pick(ACTIONS).as_bytes().to_vec()
            } else {
                token(rng)
            });
        }
        "REC.GET" | "REC.GET_RO" | "REC.USER.GET" | "REC.USER.DEL" | "REC.USER.SET"
        | "REC.INVALIDATE" => c.push(user(rng)),
        "REC.ITEM.SET" | "REC.ITEM.GET" | "REC.ITEM.DEL" | "REC.SIMILAR" => c.push(item(rng)),
        "REC.MODEL.SET" | "REC.MODEL.GET" | "REC.MODEL.DEL" => c.push(if rng.chance(0.6) {
            rng.clone_pick(&["m1", "m2", "default", "popular"])
                .as_bytes()
                .to_vec()
        } else {
            token(rng)
        }),
        "REC.ASSIGN" => {
            c.push(token(rng));
            c.push(user(rng));
        }
        _ => {}
    }
    let pairs = rng.below(5);
    for _ in 0..pairs {
        let k = rng.clone_pick(KEYWORDS);
        c.push(mixed_case(rng, k).into_bytes());
        if rng.chance(0.9) {
            c.push(token(rng));
        }
    }
    c
}

/// A cheap digest of a fixed sample (read-only commands only).
fn small_digest(con: &mut Connection) -> Vec<String> {
    let mut cmds: Vec<Vec<Vec<u8>>> = vec![
        args(&["REC.MODEL.LIST"]),
        args(&["REC.MODEL.GET", "default"]),
        args(&["REC.MODEL.GET", "popular"]),
        args(&["REC.MODEL.GET", "m1"]),
        args(&["REC.POPULAR", "COUNT", "50", "WITHSCORES"]),
        args(&["REC.POPULAR", "CATEGORY", "c0", "WITHSCORES"]),
        args(&["DBSIZE"]),
    ];
    for i in &ITEMS[..6] {
        cmds.push(args(&["REC.ITEM.GET", i]));
    }
    for i in &ITEMS[..3] {
        cmds.push(args(&["REC.SIMILAR", i, "WITHSCORES"]));
    }
    for u in &USERS[..4] {
        cmds.push(args(&["REC.USER.GET", u]));
        cmds.push(args(&[
            "REC.GET_RO",
            u,
            "COUNT",
            "20",
            "WITHSCORES",
            "WITHREASONS",
            "NOCACHE",
        ]));
    }
    cmds.push(args(&[
        "REC.GET_RO",
        "u0",
        "MODEL",
        "m1",
        "WITHSCORES",
        "NOCACHE",
    ]));
    let replies = call_pipelined(con, &cmds);
    cmds.iter()
        .zip(replies)
        .map(|(c, r)| format!("{} => {:?}", show_cmd(c), without_field(&r, "rec_id")))
        .collect()
}

fn setup(con: &mut Connection) {
    let mut cmds = Vec::new();
    for (n, i) in ITEMS.iter().enumerate() {
        cmds.push(args(&[
            "REC.ITEM.SET",
            i,
            "CATEGORY",
            CATEGORIES[n % 3],
            "TAGS",
            "a,b",
        ]));
    }
    cmds.push(args(&["REC.MODEL.SET", "m1", "COOC", "0.5"]));
    let mut rng = Rng::new(7);
    for _ in 0..300 {
        let u = rng.clone_pick(USERS);
        let i = rng.clone_pick(ITEMS);
        let a = rng.clone_pick(&["view", "click", "purchase", "add_to_cart"]);
        cmds.push(args(&["REC.TRACK", u, i, a]));
    }
    cmds.push(args(&["REC.USER.SET", "u0", "age", "30"]));
    run_all(con, &cmds);
}

fn rec_commands(con: &mut Connection) -> Vec<String> {
    let mut names: Vec<String> = DOCUMENTED.iter().map(|s| s.to_string()).collect();
    let listed = call(con, &["COMMAND", "LIST", "FILTERBY", "PATTERN", "rec.*"]);
    for n in ids(&listed) {
        let n = n.to_uppercase();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// Sends `iterations` hostile commands on `raw`; `con` (another connection to the same server)
/// takes the digests before and after.
fn fuzz(con: &mut Connection, raw: &mut RawConn, seed: u64, iterations: usize) {
    let names = rec_commands(con);
    let (full_users, full_items): (Vec<&str>, Vec<&str>) = (USERS.to_vec(), ITEMS.to_vec());
    let mut rng = Rng::new(seed);
    let (mut errors, mut oks, mut checked) = (0usize, 0usize, 0usize);
    let mut panics: Vec<String> = Vec::new();
    for i in 0..iterations {
        let name = rng.pick(&names).clone();
        let c = hostile(&mut rng, &name);
        let check_small = i % 2 == 0;
        let check_full = i % 500 == 0;
        let before = check_small.then(|| small_digest(con));
        let before_full = check_full.then(|| state_digest_ro(con, &full_users, &full_items));
        let r = raw.call(&c);
        if let Some(t) = r.error_text() {
            errors += 1;
            assert!(
                t.starts_with("ERR") || t.starts_with("WRONGTYPE"),
                "odd error for {}: {t}",
                show_cmd(&c)
            );
            if t.contains("internal error") {
                panics.push(format!("{} -> {t}", show_cmd(&c)));
            }
            if let Some(b) = before {
                checked += 1;
                assert_digest_eq(
                    &b,
                    &small_digest(con),
                    &format!("after failed {}", show_cmd(&c)),
                );
            }
            if let Some(b) = before_full {
                assert_digest_eq(
                    &b,
                    &state_digest_ro(con, &full_users, &full_items),
                    &format!("after failed {}", show_cmd(&c)),
                );
            }
        } else {
            oks += 1;
        }
        if i % 100 == 0 {
            assert_eq!(
                raw.call(&["PING"]),
                Resp::Simple(b"PONG".to_vec()),
                "after {}",
                show_cmd(&c)
            );
        }
    }
    eprintln!("seed {seed}: {iterations} commands, {errors} errors ({checked} checked), {oks} ok");
    assert!(
        panics.is_empty(),
        "{} commands panicked inside the module (caught), e.g.:\n{}",
        panics.len(),
        panics
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        errors > iterations / 10,
        "too few errors: the generator is too tame"
    );
    assert!(
        oks > iterations / 50,
        "too few successes: the generator never hits valid forms"
    );
}

#[test]
fn random_arguments_resp2() {
    let mut srv = Server::start();
    let mut con = srv.connection();
    setup(&mut con);
    let mut raw = RawConn::connect(srv.port);
    fuzz(&mut con, &mut raw, 1, 12_000);
    assert_eq!(as_str(&call(&mut con, &["PING"])), "PONG");
    // The state it ended in still persists and reloads.
    let before = small_digest(&mut con);
    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert_digest_eq(
        &before,
        &small_digest(&mut con),
        "DEBUG RELOAD after fuzzing",
    );
    assert!(srv.is_alive());
    let log = srv.log();
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
}

#[test]
fn random_arguments_resp3() {
    let mut srv = Server::start();
    let mut con = srv.connection_resp3();
    setup(&mut con);
    let mut raw = RawConn::resp3(srv.port);
    fuzz(&mut con, &mut raw, 2, 4_000);
    assert_eq!(as_str(&call(&mut con, &["PING"])), "PONG");
    assert!(srv.is_alive());
    assert!(!srv.log().contains("panicked"));
}

#[test]
fn huge_and_odd_arguments() {
    let mut srv = Server::start();
    let mut con = srv.connection();
    setup(&mut con);
    let before = small_digest(&mut con);
    let huge = vec![b'z'; 600_000];
    let many_excludes: Vec<Vec<u8>> = {
        let mut c = args(&["REC.GET", "u0", "EXCLUDE"]);
        c.extend((0..50_000).map(|i| format!("x{i}").into_bytes()));
        c
    };
    let bad: Vec<Vec<Vec<u8>>> = vec![
        vec![b"REC.ITEM.SET".to_vec(), huge.clone()],
        vec![
            b"REC.ITEM.SET".to_vec(),
            b"i0".to_vec(),
            b"PROPS".to_vec(),
            huge.clone(),
        ],
        vec![
            b"REC.TRACK".to_vec(),
            huge.clone(),
            b"i0".to_vec(),
            b"view".to_vec(),
        ],
        vec![
            b"REC.USER.SET".to_vec(),
            b"u0".to_vec(),
            b"f".to_vec(),
            huge.clone(),
        ],
        args(&["REC.GET", "u0", "COUNT", "1000000000"]),
        args(&["REC.POPULAR", "COUNT", "18446744073709551615"]),
        args(&["REC.SIMILAR", "i0", "COUNT", "-9223372036854775808"]),
        args(&["REC.TRACK", "u0", "i0", "view", "VALUE", "1e309"]),
        args(&["REC.TRACK", "u0", "i0", "view", "TS", "9223372036854775807"]),
        args(&[
            "REC.MODEL.SET",
            "m1",
            "COOC",
            "1e6",
            "AFFINITY",
            "-0",
            "POPULARITY",
            "nan",
        ]),
    ];
    for c in &bad {
        let r = call(&mut con, c);
        assert!(is_err(&r), "{} accepted: {r:?}", show_cmd(c));
        assert_digest_eq(&before, &small_digest(&mut con), &show_cmd(c));
    }
    // Many EXCLUDEs are fine (or a clear error), never a crash.
    let r = call(&mut con, &many_excludes);
    assert!(!matches!(r, Value::Nil), "{r:?}");
    assert_eq!(as_str(&call(&mut con, &["PING"])), "PONG");
    // Extreme but valid values are accepted and stay finite.
    assert_eq!(
        call(
            &mut con,
            &["REC.MODEL.SET", "m1", "COOC", "1000000", "RECENCY", "0.001"]
        ),
        Value::Int(0)
    );
    assert_ok(&call(
        &mut con,
        &["REC.TRACK", "u0", "i1", "view", "VALUE", "1e6"],
    ));
    assert_ok(&call(
        &mut con,
        &["REC.TRACK", "u0", "i1", "view", "VALUE", "1e6"],
    ));
    // Negative VALUEs: docs say only "finite"; accepted or a clear error.
    for v in ["-1e6", "-1"] {
        let r = call(&mut con, &["REC.TRACK", "u0", "i2", "view", "VALUE", v]);
        assert!(
            matches!(r, Value::Okay) || err_text(&r).is_some_and(|t| t.starts_with("ERR")),
            "{r:?}"
        );
    }
    assert_ok(&call(
        &mut con,
        &["REC.TRACK", "u0", "i2", "dislike", "VALUE", "1e6"],
    ));
    assert_ok(&call(
        &mut con,
        &["REC.TRACK", "u1", "i2", "rating", "VALUE", "1"],
    ));
    for u in USERS {
        for m in ["default", "m1", "popular"] {
            let r = call(
                &mut con,
                &["REC.GET", u, "MODEL", m, "WITHSCORES", "COUNT", "100"],
            );
            for it in rec_items(&r) {
                let s = it.score.unwrap();
                assert!(!s.is_nan(), "NaN score for {u}/{m}: {it:?}");
            }
        }
    }
    for it in ITEMS {
        let v = call(&mut con, &["REC.ITEM.GET", it]);
        assert!(!as_f64(&field(&v, "popularity")).is_nan(), "{v:?}");
        for (_, s) in scored(&call(&mut con, &["REC.SIMILAR", it, "WITHSCORES"])) {
            assert!(!s.is_nan(), "NaN similarity for {it}");
        }
    }
    assert_ok(&call(&mut con, &["DEBUG", "RELOAD"]));
    assert!(srv.is_alive());
}
