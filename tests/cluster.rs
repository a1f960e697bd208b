//! A real 3-primary Redis Cluster: user commands route by the user argument (the node owning
//! `CLUSTER KEYSLOT <user>` runs them, any other node answers `MOVED` to it), never raise
//! `CROSSSLOT`, and keep every derived key of the user on that node, in that slot; node-wide
//! commands (catalog, popularity, experiments, `REC.INVALIDATE ITEM|ALL`) run on any node.
//!
//! The cluster is formed by `redis-cli --cluster create`, the catalog, a model and an experiment
//! are loaded with `redis-cli --cluster call` (as the README says), and every node is then talked
//! to over its own connection, routing by the slot map read from `CLUSTER SLOTS`.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use redis::{Connection, Value};

const NODES: usize = 3;
const SLOTS: usize = 16384;
/// How long forming the cluster (redis-cli, then `cluster_state:ok` everywhere) may take.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// Items: 0..40 come in pairs (P_j = 2j, Q_j = 2j+1) bought together by background users on
/// every shard; 40..60 are viewed by the test users.
const ITEMS: usize = 60;
const PAIRS: usize = 10;
const CATEGORIES: usize = 6;
/// Background users per (shard, pair).
const BG_PER_PAIR: usize = 3;
const TEST_USERS: usize = 300;
const EXP: &str = "exp1";

fn item(i: usize) -> String {
    format!("item-{i:02}")
}

fn category(i: usize) -> String {
    format!("cat-{}", i % CATEGORIES)
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn show(id: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(id))
}

// ---------------------------------------------------------------------------------------------
// redis-cli
// ---------------------------------------------------------------------------------------------

/// Runs redis-cli with a deadline; returns its exit status and stdout + stderr.
fn redis_cli(argv: &[String], timeout: Duration) -> (bool, String) {
    let bin = std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_string());
    let mut child = Command::new(&bin)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {bin}: {e}"));
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "redis-cli {argv:?} did not finish within {timeout:?}; output:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

struct Cluster {
    nodes: Vec<Server>,
    cons: Vec<Connection>,
    /// slot -> index of the node owning it.
    owner: Vec<usize>,
}

/// `CLUSTER SLOTS` as sorted `(start, end, primary port)` ranges.
fn slot_ranges(con: &mut Connection) -> Vec<(i64, i64, i64)> {
    let r = call(con, &["CLUSTER", "SLOTS"]);
    let mut v: Vec<(i64, i64, i64)> = as_array(&r)
        .iter()
        .map(|e| {
            let e = as_array(e);
            let primary = as_array(&e[2]);
            (as_i64(&e[0]), as_i64(&e[1]), as_i64(&primary[1]))
        })
        .collect();
    v.sort();
    v
}

impl Cluster {
    fn start() -> Cluster {
        let nodes: Vec<Server> = (0..NODES)
            .map(|_| {
                let dir = temp_dir("cluster");
                let conf = dir.join("nodes.conf").display().to_string();
                // An explicit bus port: the harness's ports are ephemeral, and `port + 10000`
                // (the default bus port) may exceed 65535.
                let bus = free_port().to_string();
                let extra: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                Server::start_in(dir, extra)
            })
            .collect();
        let mut argv: Vec<String> = vec!["--cluster".into(), "create".into()];
        argv.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        argv.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
        let (ok, out) = redis_cli(&argv, CLUSTER_TIMEOUT);
        assert!(
            ok && out.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{out}"
        );
        let mut cons: Vec<Connection> = nodes.iter().map(Server::connection).collect();

        // Bounded wait: every node says ok, knows all three nodes, and agrees on the slot map.
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        loop {
            let mut states = Vec::new();
            let mut maps = Vec::new();
            for con in cons.iter_mut() {
                let i = parse_info(&as_str(&call(con, &["CLUSTER", "INFO"])));
                states.push((
                    i.get("cluster_state").cloned().unwrap_or_default(),
                    i.get("cluster_known_nodes").cloned().unwrap_or_default(),
                    i.get("cluster_slots_assigned").cloned().unwrap_or_default(),
                ));
                maps.push(slot_ranges(con));
            }
            let ready = states
                .iter()
                .all(|(s, k, a)| s == "ok" && k == "3" && a == "16384")
                && maps.iter().all(|m| *m == maps[0]);
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not ready within {CLUSTER_TIMEOUT:?}: {states:?} {maps:?}"
            );
            sleep(Duration::from_millis(50));
        }

        let ports: Vec<i64> = nodes.iter().map(|n| i64::from(n.port)).collect();
        let mut owner = vec![usize::MAX; SLOTS];
        for (start, end, port) in slot_ranges(&mut cons[0]) {
            let n = ports
                .iter()
                .position(|&p| p == port)
                .unwrap_or_else(|| panic!("CLUSTER SLOTS names unknown port {port}"));
            for s in start..=end {
                owner[s as usize] = n;
            }
        }
        assert!(owner.iter().all(|&o| o < NODES), "slots not all covered");
        for n in 0..NODES {
            assert!(owner.contains(&n), "node {n} owns no slot");
        }
        Cluster { nodes, cons, owner }
    }

    fn addr(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[n].port)
    }

    /// `CLUSTER KEYSLOT` of each key (asked of node 0: the command computes, it does not route).
    fn keyslots(&mut self, keys: &[Vec<u8>]) -> Vec<usize> {
        let cmds: Vec<Vec<Vec<u8>>> = keys
            .iter()
            .map(|k| vec![b("CLUSTER"), b("KEYSLOT"), k.clone()])
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in cmds.chunks(1000) {
            for (c, r) in chunk.iter().zip(call_pipelined(&mut self.cons[0], chunk)) {
                let s = as_i64(&r);
                assert!((0..SLOTS as i64).contains(&s), "{} -> {r:?}", show_cmd(c));
                out.push(s as usize);
            }
        }
        out
    }

    /// Sends each command to its node (pipelined per node); replies in the given order.
    fn run(&mut self, routed: &[(usize, Vec<Vec<u8>>)]) -> Vec<Value> {
        let mut out = vec![Value::Nil; routed.len()];
        for n in 0..NODES {
            let idx: Vec<usize> = (0..routed.len()).filter(|&i| routed[i].0 == n).collect();
            for chunk in idx.chunks(500) {
                let cmds: Vec<Vec<Vec<u8>>> = chunk.iter().map(|&i| routed[i].1.clone()).collect();
                for (&i, r) in chunk.iter().zip(call_pipelined(&mut self.cons[n], &cmds)) {
                    out[i] = r;
                }
            }
        }
        out
    }

    /// [`Cluster::run`], asserting that no reply is an error (MOVED, CROSSSLOT or any other).
    #[track_caller]
    fn run_ok(&mut self, routed: &[(usize, Vec<Vec<u8>>)]) -> Vec<Value> {
        let replies = self.run(routed);
        for ((n, c), r) in routed.iter().zip(&replies) {
            assert!(
                !is_err(r),
                "{} sent to node {n} ({}) -> {r:?}",
                show_cmd(c),
                self.addr(*n)
            );
        }
        replies
    }

    /// Runs one command on every node; none may fail.
    #[track_caller]
    fn on_all(&mut self, cmd: &[&str]) -> Vec<Value> {
        let routed: Vec<(usize, Vec<Vec<u8>>)> = (0..NODES).map(|n| (n, args(cmd))).collect();
        self.run_ok(&routed)
    }

    /// Every key of node `n`, by `SCAN`.
    fn scan(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        let mut cursor = b("0");
        loop {
            let r = call(
                &mut self.cons[n],
                &[b("SCAN"), cursor.clone(), b("COUNT"), b("1000")],
            );
            let parts = as_array(&r);
            cursor = as_bytes(&parts[0]);
            keys.extend(as_array(&parts[1]).iter().map(as_bytes));
            if cursor == b"0" {
                break;
            }
        }
        let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
        let mut keys: Vec<Vec<u8>> = distinct.into_iter().cloned().collect();
        keys.sort();
        keys
    }

    /// `redis-cli --cluster call <node 0> <cmd> --cluster-only-masters`, then a check that every
    /// primary answered without an error.
    fn cli_call(&self, cmd: &[&str]) {
        let mut argv: Vec<String> = vec!["--cluster".into(), "call".into(), self.addr(0)];
        argv.extend(cmd.iter().map(|s| s.to_string()));
        argv.push("--cluster-only-masters".into());
        let (ok, out) = redis_cli(&argv, Duration::from_secs(20));
        assert!(ok, "redis-cli {argv:?} failed:\n{out}");
        for n in 0..NODES {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("{}:", self.addr(n))))
                .unwrap_or_else(|| panic!("no answer from node {n} in:\n{out}"));
            assert!(
                !line.contains("ERR") && !line.contains("MOVED"),
                "{cmd:?} on node {n}: {line}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Users and their keys (docs/commands.md, "Key layout")
// ---------------------------------------------------------------------------------------------

/// Redis's hash-tag rule: the bytes between the first `{` and the next `}` if non-empty, else
/// the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&c| c == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&c| c == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// How a user's key of kind `u` (state) or `c` (cached lists) is named: exactly, or (for ids
/// that hash whole and contain `}`) a tag-free prefix followed by a 3-byte solved suffix.
enum KeyForm {
    Exact(Vec<u8>),
    Solved(Vec<u8>),
}

fn key_form(user: &[u8], kind: u8) -> KeyForm {
    let tag = hash_tag(user);
    let mut k = b("rec:");
    if !tag.contains(&b'}') {
        k.push(b'{');
        k.extend_from_slice(tag);
        k.extend_from_slice(b"}:");
        k.push(kind);
        if tag.len() != user.len() {
            k.push(b':');
            k.extend_from_slice(user);
        }
        return KeyForm::Exact(k);
    }
    k.extend_from_slice(b"h:");
    for c in user {
        k.extend_from_slice(format!("{c:02x}").as_bytes());
    }
    k.push(b':');
    k.push(kind);
    k.push(b':');
    KeyForm::Solved(k)
}

/// Maps a key back to the user (index) it belongs to, by the documented layout.
struct KeyIndex {
    exact: HashMap<Vec<u8>, (usize, u8)>,
    solved: HashMap<Vec<u8>, (usize, u8)>,
}

impl KeyIndex {
    fn new(users: &[Vec<u8>]) -> KeyIndex {
        let mut ix = KeyIndex {
            exact: HashMap::new(),
            solved: HashMap::new(),
        };
        for (i, u) in users.iter().enumerate() {
            for kind in [b'u', b'c'] {
                let prev = match key_form(u, kind) {
                    KeyForm::Exact(k) => ix.exact.insert(k, (i, kind)),
                    KeyForm::Solved(p) => ix.solved.insert(p, (i, kind)),
                };
                assert!(prev.is_none(), "two users share a key name: {}", show(u));
            }
        }
        ix
    }

    /// (user index, kind) of a key, or None for a key no user owns.
    fn owner(&self, key: &[u8]) -> Option<(usize, u8)> {
        if let Some(&x) = self.exact.get(key) {
            return Some(x);
        }
        if key.starts_with(b"rec:h:") && key.len() > 3 {
            return self.solved.get(&key[..key.len() - 3]).copied();
        }
        None
    }
}

/// ~300 distinct user ids: brace-carrying ids, plain ids, a maximal-length id, random binary.
fn test_users() -> Vec<Vec<u8>> {
    let mut users: Vec<Vec<u8>> = [
        "a{b}c",
        "x{b}y",
        "b",
        "{b}",
        "a}b",
        "{}x",
        "{x}",
        "x",
        "{",
        "}",
        "{}",
        "}{",
        "{{a}",
        "}{b}",
        "{b}{c}",
        "x{a",
        "a{}b{c}",
        "ALL-users",
        "user with spaces",
        "ユーザー",
        "user:1",
        "rec:{b}:u",
    ]
    .iter()
    .map(|s| b(s))
    .collect();
    // The longest id the default config allows, hashing whole with a `}` inside.
    let mut long = vec![b'z'; 256];
    long[100] = b'}';
    users.push(long);
    users.extend((0..130).map(|i| format!("user-{i}").into_bytes()));
    let mut rng = Rng::new(0xC1u64 << 32 | 0x5EED);
    let mut seen: HashSet<Vec<u8>> = users.iter().cloned().collect();
    while users.len() < TEST_USERS {
        let len = rng.range(1, 40) as usize;
        let id: Vec<u8> = (0..len)
            .map(|_| {
                if rng.chance(0.2) {
                    *rng.pick(b"{}")
                } else {
                    rng.next_u64() as u8
                }
            })
            .collect();
        // `REC.INVALIDATE ALL` / `ITEM` are keywords there, not users.
        let lower = id.to_ascii_lowercase();
        if lower == b"all" || lower == b"item" || !seen.insert(id.clone()) {
            continue;
        }
        users.push(id);
    }
    assert_eq!(users.len(), TEST_USERS);
    users
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn user_commands_route_by_user_in_a_three_primary_cluster() {
    let started = Instant::now();
    assert!(
        module_path().exists(),
        "module not built: {}",
        module_path().display()
    );
    let mut cl = Cluster::start();
    eprintln!("cluster formed in {:?}", started.elapsed());

    // --- Node-wide state on every primary: a few writes through `redis-cli --cluster call`,
    // the bulk over each node's connection. --------------------------------------------------
    cl.cli_call(&["REC.MODEL.SET", "m2", "COOC", "0.5", "POPULARITY", "1"]);
    cl.cli_call(&[
        "REC.EXPERIMENT.CREATE",
        EXP,
        "POLICY",
        "split",
        "ARMS",
        "control",
        "default",
        "1",
        "treat",
        "m2",
        "1",
    ]);
    for i in 0..3 {
        cl.cli_call(&["REC.ITEM.SET", &item(i), "CATEGORY", &category(i)]);
    }
    let mut catalog = Vec::new();
    for n in 0..NODES {
        for i in 3..ITEMS {
            catalog.push((
                n,
                args(&["REC.ITEM.SET", &item(i), "CATEGORY", &category(i)]),
            ));
        }
    }
    cl.run_ok(&catalog);
    for n in 0..NODES {
        let con = &mut cl.cons[n];
        for i in 0..ITEMS {
            let r = call(con, &["REC.ITEM.GET", &item(i)]);
            assert_eq!(
                as_str(&field(&r, "category")),
                category(i),
                "node {n}: {r:?}"
            );
        }
        let m = call(con, &["REC.MODEL.GET", "m2"]);
        assert_eq!(as_f64(&field(&m, "popularity")), 1.0, "node {n}: {m:?}");
        let e = call(con, &["REC.EXPERIMENT.GET", EXP]);
        assert!(!is_err(&e) && e != Value::Nil, "node {n}: {e:?}");
    }

    // --- Background users: on every shard, BG_PER_PAIR users buy P_j and Q_j together, so
    // every shard learns that Q_j goes with P_j. --------------------------------------------
    let candidates: Vec<Vec<u8>> = (0..2000).map(|i| format!("bg-{i}").into_bytes()).collect();
    let cand_slots = cl.keyslots(&candidates);
    let mut per_node = [0usize; NODES];
    let mut bg: Vec<(Vec<u8>, usize, usize, usize)> = Vec::new(); // (id, owner, pair, slot)
    for (id, &slot) in candidates.iter().zip(&cand_slots) {
        let n = cl.owner[slot];
        if per_node[n] < PAIRS * BG_PER_PAIR {
            bg.push((id.clone(), n, per_node[n] % PAIRS, slot));
            per_node[n] += 1;
        }
    }
    assert!(
        per_node.iter().all(|&c| c == PAIRS * BG_PER_PAIR),
        "{per_node:?}"
    );
    // Expected `events` of each item on each node.
    let mut expected_events = vec![[0i64; NODES]; ITEMS];
    let mut bg_cmds = Vec::new();
    for (id, n, j, _) in &bg {
        for it in [2 * j, 2 * j + 1] {
            bg_cmds.push((
                *n,
                vec![b("REC.TRACK"), id.clone(), b(&item(it)), b("purchase")],
            ));
            expected_events[it][*n] += 1;
        }
    }
    cl.run_ok(&bg_cmds);

    // --- Test users, each sent to the owner of CLUSTER KEYSLOT <user>. ----------------------
    let users = test_users();
    let slots = cl.keyslots(&users);
    let owners: Vec<usize> = slots.iter().map(|&s| cl.owner[s]).collect();
    for n in 0..NODES {
        assert!(
            owners.iter().filter(|&&o| o == n).count() >= 50,
            "node {n} owns too few test users: {owners:?}"
        );
    }
    let pair_of = |k: usize| k % PAIRS;
    let viewed_of = |k: usize| 2 * PAIRS + 20 + k % 20;

    let mut writes = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let n = owners[k];
        let (p, v) = (item(2 * pair_of(k)), item(viewed_of(k)));
        writes.push((n, vec![b("REC.TRACK"), u.clone(), b(&p), b("purchase")]));
        writes.push((n, vec![b("REC.TRACK"), u.clone(), b(&v), b("view")]));
        writes.push((
            n,
            vec![
                b("REC.USER.SET"),
                u.clone(),
                b("tier"),
                format!("t{k}").into_bytes(),
            ],
        ));
        expected_events[2 * pair_of(k)][n] += 1;
        expected_events[viewed_of(k)][n] += 1;
    }
    for (c, r) in writes.iter().zip(cl.run_ok(&writes)) {
        if c.1[0] == b"REC.TRACK" {
            assert_ok(&r);
        } else {
            assert_eq!(r, Value::Int(1), "{}", show_cmd(&c.1));
        }
    }

    const PER_USER: usize = 7;
    let mut reads = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let n = owners[k];
        let with = |rest: &[&str], cmd: &str| {
            let mut c = vec![b(cmd), u.clone()];
            c.extend(args(rest));
            (n, c)
        };
        reads.push(with(&[], "REC.USER.GET"));
        reads.push(with(&["WITHREASONS"], "REC.GET"));
        reads.push(with(&["WITHREASONS"], "REC.GET_RO"));
        reads.push(with(&["EXPERIMENT", EXP], "REC.GET"));
        reads.push((n, vec![b("REC.ASSIGN"), b(EXP), u.clone()]));
        reads.push(with(&[], "REC.INVALIDATE"));
        // Refill the cache, so the cache key exists for the key checks below.
        reads.push(with(&["COUNT", "5"], "REC.GET"));
    }
    let replies = cl.run_ok(&reads);
    let mut arms_per_node = [0i64; NODES];
    for (k, u) in users.iter().enumerate() {
        let r = &replies[k * PER_USER..(k + 1) * PER_USER];
        let who = format!("user {} on node {}", show(u), owners[k]);
        // REC.USER.GET: this user's own state.
        let ug = &r[0];
        assert_eq!(as_bytes(&field(ug, "user")), *u, "{who}: {ug:?}");
        assert_eq!(as_i64(&field(ug, "events")), 2, "{who}: {ug:?}");
        let features = map_entries(&field(ug, "features"));
        assert_eq!(
            features
                .iter()
                .map(|(f, v)| (f.clone(), as_str(v)))
                .collect::<Vec<_>>(),
            vec![("tier".to_string(), format!("t{k}"))],
            "{who}"
        );
        // REC.GET / REC.GET_RO: recommendations from the user's own history on its shard.
        let (p, q) = (item(2 * pair_of(k)), item(2 * pair_of(k) + 1));
        let want_reason = format!("because you purchased {p}");
        for (what, reply) in [("REC.GET", &r[1]), ("REC.GET_RO", &r[2])] {
            let items = rec_items(reply);
            assert!(
                !items.iter().any(|i| i.id == p),
                "{who}: {what} recommends the purchased {p}: {items:?}"
            );
            assert!(
                items
                    .iter()
                    .any(|i| i.id == q && i.reason.as_deref() == Some(want_reason.as_str())),
                "{who}: {what} lacks {q} \"{want_reason}\": {items:?}"
            );
            assert_eq!(
                as_str(&field(reply, "model")),
                "default",
                "{who}: {reply:?}"
            );
        }
        assert_eq!(rec_ids(&r[1]), rec_ids(&r[2]), "{who}: GET vs GET_RO");
        // REC.GET EXPERIMENT and REC.ASSIGN agree on the arm.
        let arm = as_str(&field(&r[3], "arm"));
        assert!(arm == "control" || arm == "treat", "{who}: {:?}", r[3]);
        assert_eq!(
            as_str(&r[4]),
            arm,
            "{who}: REC.ASSIGN vs REC.GET EXPERIMENT"
        );
        arms_per_node[owners[k]] += 1;
        // REC.INVALIDATE <user>: the lists cached by the two REC.GETs.
        assert!(as_i64(&r[5]) >= 1, "{who}: REC.INVALIDATE -> {:?}", r[5]);
        assert_eq!(rec_items(&r[6]).len(), 5, "{who}: {:?}", r[6]);
    }

    // --- Keys: every key lives on the node owning its slot, belongs to a known user, and each
    // user's keys hash to the user's slot and exist only on the user's node. -----------------
    let mut all_ids: Vec<Vec<u8>> = users.clone();
    all_ids.extend(bg.iter().map(|(id, _, _, _)| id.clone()));
    let mut all_owner: Vec<usize> = owners.clone();
    all_owner.extend(bg.iter().map(|&(_, n, _, _)| n));
    let mut all_slot: Vec<usize> = slots.clone();
    all_slot.extend(bg.iter().map(|&(_, _, _, s)| s));
    let index = KeyIndex::new(&all_ids);
    let check_keys = |cl: &mut Cluster, live_test_users: bool| {
        let mut found: Vec<HashSet<u8>> = vec![HashSet::new(); all_ids.len()];
        for n in 0..NODES {
            let keys = cl.scan(n);
            let key_slots = cl.keyslots(&keys);
            let types = cl.run_ok(
                &keys
                    .iter()
                    .map(|k| (n, vec![b("TYPE"), k.clone()]))
                    .collect::<Vec<_>>(),
            );
            for ((key, &slot), ty) in keys.iter().zip(&key_slots).zip(&types) {
                let (i, kind) = index
                    .owner(key)
                    .unwrap_or_else(|| panic!("node {n}: key {} belongs to no user", show(key)));
                let who = show(&all_ids[i]);
                assert_eq!(
                    cl.owner[slot],
                    n,
                    "node {n} holds key {} of slot {slot}, owned by node {}",
                    show(key),
                    cl.owner[slot]
                );
                assert_eq!(
                    all_owner[i],
                    n,
                    "key {} of user {who} on node {n}",
                    show(key)
                );
                assert_eq!(
                    slot,
                    all_slot[i],
                    "key {} of user {who} hashes to {slot}, the user to {}",
                    show(key),
                    all_slot[i]
                );
                let want_type = if kind == b'u' { "RecUserSt" } else { "hash" };
                assert_eq!(as_str(ty), want_type, "TYPE {}", show(key));
                assert!(
                    found[i].insert(kind),
                    "user {who} has two keys of kind {}",
                    kind as char
                );
            }
        }
        for (i, id) in all_ids.iter().enumerate() {
            let want: HashSet<u8> = if i >= users.len() {
                [b'u'].into()
            } else if live_test_users {
                [b'u', b'c'].into()
            } else {
                HashSet::new()
            };
            // Background users never asked for recommendations: no cache key.
            assert_eq!(
                found[i],
                want,
                "keys of user {} on node {}",
                show(id),
                all_owner[i]
            );
        }
    };
    check_keys(&mut cl, true);
    eprintln!(
        "test users per node {:?}, keys per node {:?}",
        (0..NODES)
            .map(|n| owners.iter().filter(|&&o| o == n).count())
            .collect::<Vec<_>>(),
        (0..NODES).map(|n| cl.scan(n).len()).collect::<Vec<_>>()
    );

    // Events landed only on the owning shard: per-node event counts per item.
    for n in 0..NODES {
        for (i, want) in expected_events.iter().enumerate() {
            let r = call(&mut cl.cons[n], &["REC.ITEM.GET", &item(i)]);
            assert_eq!(
                as_i64(&field(&r, "events")),
                want[n],
                "node {n}, {}: {r:?}",
                item(i)
            );
        }
    }

    // --- Any other node redirects user commands to the owner: MOVED <slot> <owner>. ----------
    let mut wrong = Vec::new();
    let mut expect = Vec::new();
    for (k, u) in users.iter().enumerate() {
        let cmds: Vec<Vec<Vec<u8>>> = vec![
            vec![b("REC.TRACK"), u.clone(), b(&item(0)), b("view")],
            vec![b("REC.GET"), u.clone(), b("COUNT"), b("3")],
            vec![b("REC.GET_RO"), u.clone()],
            vec![b("REC.USER.GET"), u.clone()],
            vec![b("REC.USER.SET"), u.clone(), b("f"), b("v")],
            vec![b("REC.USER.DEL"), u.clone()],
            vec![b("REC.INVALIDATE"), u.clone()],
            vec![b("REC.ASSIGN"), b(EXP), u.clone()],
        ];
        let moved = format!("MOVED {} {}", slots[k], cl.addr(owners[k]));
        for n in (0..NODES).filter(|&n| n != owners[k]) {
            for c in &cmds {
                wrong.push((n, c.clone()));
                expect.push(moved.clone());
            }
        }
    }
    for (((n, c), r), want) in wrong.iter().zip(cl.run(&wrong)).zip(&expect) {
        assert_eq!(
            err_text(&r).as_deref(),
            Some(want.as_str()),
            "{} sent to node {n}",
            show_cmd(c)
        );
    }
    // The redirected writes changed nothing: each user still has exactly its two events.
    let gets: Vec<(usize, Vec<Vec<u8>>)> = users
        .iter()
        .enumerate()
        .map(|(k, u)| (owners[k], vec![b("REC.USER.GET"), u.clone()]))
        .collect();
    for ((_, c), r) in gets.iter().zip(cl.run_ok(&gets)) {
        assert_eq!(as_i64(&field(&r, "events")), 2, "{}: {r:?}", show_cmd(c));
        assert_eq!(map_entries(&field(&r, "features")).len(), 1, "{r:?}");
    }

    // --- Users sharing a slot (`a{b}c`, `x{b}y`, `b`, `{b}` all hash as `b`) go together in
    // one transaction on their node: no CROSSSLOT. ---------------------------------------------
    let same_slot = ["a{b}c", "x{b}y", "b", "{b}"];
    let k0 = users.iter().position(|u| u == b"a{b}c").unwrap();
    for u in same_slot {
        let k = users.iter().position(|x| x == u.as_bytes()).unwrap();
        assert_eq!(slots[k], slots[k0], "{u} and a{{b}}c hash alike");
    }
    let tx: Vec<Vec<Vec<u8>>> = vec![
        args(&["MULTI"]),
        args(&["REC.TRACK", "a{b}c", "item-05", "click"]),
        args(&["REC.GET", "x{b}y", "WITHREASONS"]),
        args(&["REC.USER.GET", "b"]),
        args(&["REC.USER.SET", "{b}", "tier", "tx"]),
        args(&["REC.INVALIDATE", "a{b}c"]),
        args(&["REC.GET_RO", "a{b}c"]),
        args(&["EXEC"]),
    ];
    let r = call_pipelined(&mut cl.cons[owners[k0]], &tx);
    assert!(!r.iter().any(is_err), "transaction: {r:?}");
    let exec = as_array(&r[tx.len() - 1]);
    assert_eq!(exec.len(), tx.len() - 2, "{exec:?}");
    assert!(!exec.iter().any(is_err), "transaction: {exec:?}");
    assert_eq!(as_bytes(&field(&exec[2], "user")), b"b");
    let ug = call(&mut cl.cons[owners[k0]], &["REC.USER.GET", "a{b}c"]);
    assert_eq!(as_i64(&field(&ug, "events")), 3, "{ug:?}");

    // --- Node-wide commands run on every node without redirection. --------------------------
    for (n, r) in cl.on_all(&["REC.POPULAR"]).iter().enumerate() {
        assert_eq!(ids(r).len(), 10, "node {n}: {r:?}");
    }
    cl.on_all(&[
        "REC.POPULAR",
        "COUNT",
        "5",
        "CATEGORY",
        "cat-1",
        "WITHSCORES",
    ]);
    for (n, r) in cl.on_all(&["REC.ITEM.GET", "item-00"]).iter().enumerate() {
        assert_eq!(as_str(&field(r, "id")), "item-00", "node {n}");
    }
    for r in cl.on_all(&["REC.ITEM.GET", "no-such-item"]) {
        assert_eq!(r, Value::Nil);
    }
    for (n, r) in cl.on_all(&["REC.SIMILAR", "item-00"]).iter().enumerate() {
        assert!(ids(r).contains(&item(1)), "node {n}: {r:?}");
    }
    for r in cl.on_all(&["REC.INVALIDATE", "ITEM", "item-01"]) {
        assert!(as_i64(&r) >= 0, "{r:?}");
    }
    for (n, r) in cl.on_all(&["REC.EXPERIMENT.STATS", EXP]).iter().enumerate() {
        let users_here: i64 = as_array(&field(r, "arms"))
            .iter()
            .map(|a| as_i64(&field(a, "users")))
            .sum();
        assert_eq!(users_here, arms_per_node[n], "node {n}: {r:?}");
    }
    cl.on_all(&["REC.EXPERIMENT.LIST"]);
    cl.on_all(&["REC.MODEL.LIST"]);
    cl.on_all(&["REC.MODEL.GET", "m2"]);
    cl.on_all(&["REC.SAMPLESIZE", "0.1", "0.02"]);
    cl.on_all(&["REC.METRICS"]);
    for r in cl.on_all(&["REC.ITEM.SET", "item-new", "CATEGORY", "cat-0"]) {
        assert_eq!(r, Value::Int(1));
    }
    cl.on_all(&["REC.MODEL.SET", "m3", "COOC", "2"]);
    for r in cl.on_all(&["REC.INVALIDATE", "ALL"]) {
        assert!(as_i64(&r) >= 1, "REC.INVALIDATE ALL -> {r:?}");
    }
    for r in cl.on_all(&["REC.ITEM.DEL", "item-new"]) {
        assert_eq!(r, Value::Int(1));
    }

    // --- REC.USER.DEL on the owner forgets the user and its keys, on its node only. ---------
    let mut dels = Vec::new();
    for (k, u) in users.iter().enumerate() {
        dels.push((owners[k], vec![b("REC.USER.DEL"), u.clone()]));
        dels.push((owners[k], vec![b("REC.USER.GET"), u.clone()]));
        dels.push((
            owners[k],
            vec![b("REC.GET_RO"), u.clone(), b("WITHREASONS")],
        ));
    }
    let replies = cl.run_ok(&dels);
    for (k, r) in replies.chunks(3).enumerate() {
        let who = show(&users[k]);
        assert_eq!(r[0], Value::Int(1), "REC.USER.DEL {who}");
        assert_eq!(r[1], Value::Nil, "REC.USER.GET {who} after DEL");
        assert!(
            rec_items(&r[2])
                .iter()
                .all(|i| i.reason.as_deref() == Some("trending")),
            "{who} after DEL: {:?}",
            r[2]
        );
    }
    check_keys(&mut cl, false);

    let elapsed = started.elapsed();
    eprintln!("cluster test took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}
