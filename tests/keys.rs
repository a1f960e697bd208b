//! Key declaration and layout: user commands declare the user argument as their key, and the
//! derived user key lies in the user id's cluster slot for every id (braces included).

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis::{Connection, Value};

/// A one-node cluster owning every slot, so CLUSTER KEYSLOT works and commands are routed.
fn cluster_node() -> Server {
    let srv = Server::with_args(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ]);
    let mut con = srv.connection();
    assert_ok(&call(&mut con, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while info_cluster_state(&mut con) != "ok" {
        assert!(Instant::now() < deadline, "cluster_state never became ok");
        std::thread::sleep(Duration::from_millis(50));
    }
    srv
}

fn info_cluster_state(con: &mut Connection) -> String {
    let text = as_str(&call(con, &["CLUSTER", "INFO"]));
    parse_info(&text)
        .get("cluster_state")
        .cloned()
        .unwrap_or_default()
}

fn keyslot(con: &mut Connection, key: &[u8]) -> i64 {
    as_i64(&call(con, &[b"CLUSTER".as_slice(), b"KEYSLOT", key]))
}

/// Redis's own slot function (CRC16/XMODEM of the hash tag or the whole key), to cross-check.
fn slot_of(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|s| {
        key[s + 1..]
            .iter()
            .position(|&b| b == b'}')
            .filter(|&e| e > 0)
            .map(|e| &key[s + 1..s + 1 + e])
    });
    let data = tagged.unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

fn keys(con: &mut Connection) -> Vec<Vec<u8>> {
    as_array(&call(con, &["KEYS", "*"]))
        .iter()
        .map(as_bytes)
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Tracks one event for `id` on an empty server and checks the user key it made.
fn check_user_key(con: &mut Connection, id: &[u8]) -> Vec<u8> {
    assert_ok(&call(con, &["FLUSHALL"]));
    assert_eq!(as_i64(&call(con, &["DBSIZE"])), 0);
    let r = call(con, &[b"REC.TRACK".as_slice(), id, b"item1", b"view"]);
    assert_ok(&r);
    let all = keys(con);
    let user_keys: Vec<Vec<u8>> = all
        .iter()
        .filter(|k| as_str(&call(con, &[b"TYPE".as_slice(), k])) == "RecUserSt")
        .cloned()
        .collect();
    assert_eq!(
        user_keys.len(),
        1,
        "id {:?}: keys {:?}",
        String::from_utf8_lossy(id),
        all.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    );
    let key = user_keys[0].clone();
    let want = keyslot(con, id);
    assert_eq!(want, slot_of(id) as i64, "test's slot function");
    for k in &all {
        assert_eq!(
            keyslot(con, k),
            want,
            "key {:?} of user {:?} is not in the user's slot",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(id)
        );
    }
    let mem = call(con, &[b"MEMORY".as_slice(), b"USAGE", &key]);
    assert!(
        matches!(mem, Value::Int(n) if n > 0),
        "MEMORY USAGE: {mem:?}"
    );
    assert_eq!(
        call(con, &[b"TTL".as_slice(), &key]),
        Value::Int(-1),
        "user keys have no TTL"
    );
    let u = call(con, &[b"REC.USER.GET".as_slice(), id]);
    assert_eq!(as_bytes(&field(&u, "user")), id);
    // The key dumps and restores like any key of a module type.
    let dump = call(con, &[b"DUMP".as_slice(), &key]);
    assert!(matches!(dump, Value::BulkString(_)), "DUMP: {dump:?}");
    key
}

#[test]
fn user_keys_land_in_the_users_slot() {
    let srv = cluster_node();
    let mut con = srv.connection();

    assert_eq!(check_user_key(&mut con, b"alice"), b"rec:{alice}:u");
    assert_eq!(check_user_key(&mut con, b"a{b}c"), b"rec:{b}:u:a{b}c");
    for id in [b"a}b".as_slice(), b"{}x"] {
        let key = check_user_key(&mut con, id);
        let prefix = format!("rec:h:{}:u:", hex(id));
        assert!(
            key.starts_with(prefix.as_bytes()),
            "{:?} -> {:?}",
            String::from_utf8_lossy(id),
            String::from_utf8_lossy(&key)
        );
        let suffix = key.len() - prefix.len();
        assert!((2..=3).contains(&suffix), "suffix of {suffix} bytes");
    }
    let fixed: Vec<&[u8]> = vec![
        b"{x}",
        b"{",
        b"}",
        b"{}",
        b"}{",
        b"{{}}",
        b"a{",
        b"a{}b{c}",
        b"{a}{b}",
        b"x}y{z}",
        b"\0",
        b"\xff\xfe",
        b"rec:{alice}:u",
        b"user with spaces",
    ];
    let mut ids: Vec<Vec<u8>> = fixed.iter().map(|x| x.to_vec()).collect();
    let mut rng = Rng::new(11);
    for _ in 0..40 {
        let len = rng.range(1, 16) as usize;
        let id: Vec<u8> = (0..len)
            .map(|_| match rng.below(4) {
                0 => b'{',
                1 => b'}',
                _ => rng.next_u64() as u8,
            })
            .collect();
        ids.push(id);
    }
    ids.push(vec![b'}'; 256]);
    ids.push(b"{a\0b}\0".to_vec());
    // Check every id, then report all that failed.
    let mut failed = Vec::new();
    for id in &ids {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            check_user_key(&mut con, id)
        }));
        if r.is_err() {
            failed.push(format!("{:?}", String::from_utf8_lossy(id)));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} ids failed (see the panics above): {}",
        failed.len(),
        ids.len(),
        failed.join(", ")
    );

    // REC.USER.DEL removes the key.
    assert_eq!(
        call(&mut con, &["REC.USER.DEL", "item1-user"]),
        Value::Int(0)
    );
    check_user_key(&mut con, b"bob");
    assert_eq!(call(&mut con, &["REC.USER.DEL", "bob"]), Value::Int(1));
    assert_eq!(as_i64(&call(&mut con, &["DBSIZE"])), 0);
}

#[test]
fn key_prefix_config() {
    let srv = Server::start();
    let mut con = srv.connection();
    assert_ok(&call(
        &mut con,
        &["CONFIG", "SET", "rec.key-prefix", "shop1:"],
    ));
    assert_ok(&call(&mut con, &["REC.TRACK", "bob", "i", "view"]));
    assert_ok(&call(&mut con, &["REC.TRACK", "a}b", "i", "view"]));
    let mut ks: Vec<String> = keys(&mut con)
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    ks.sort();
    assert_eq!(ks.len(), 2, "{ks:?}");
    assert!(ks.contains(&"shop1:{bob}:u".to_string()), "{ks:?}");
    assert!(
        ks.iter().any(|k| k.starts_with("shop1:h:617d62:u:")),
        "{ks:?}"
    );
}

#[test]
fn user_commands_declare_the_user_key() {
    let srv = Server::start();
    let mut con = srv.connection();
    let ids: Vec<Vec<u8>> = vec![
        b"alice".to_vec(),
        b"a{b}c".to_vec(),
        b"{}x".to_vec(),
        b"\0bin\xff".to_vec(),
    ];
    for id in &ids {
        let forms: Vec<Vec<Vec<u8>>> = vec![
            vec![
                b"REC.TRACK".to_vec(),
                id.clone(),
                b"item".to_vec(),
                b"view".to_vec(),
            ],
            vec![
                b"REC.TRACK".to_vec(),
                id.clone(),
                b"item".to_vec(),
                b"rating".to_vec(),
                b"VALUE".to_vec(),
                b"4".to_vec(),
            ],
            vec![b"REC.GET".to_vec(), id.clone()],
            vec![
                b"REC.GET".to_vec(),
                id.clone(),
                b"COUNT".to_vec(),
                b"5".to_vec(),
                b"EXCLUDE".to_vec(),
                b"x".to_vec(),
                b"y".to_vec(),
            ],
            vec![b"REC.GET_RO".to_vec(), id.clone(), b"WITHSCORES".to_vec()],
            vec![b"REC.USER.GET".to_vec(), id.clone()],
            vec![
                b"REC.USER.SET".to_vec(),
                id.clone(),
                b"f".to_vec(),
                b"v".to_vec(),
            ],
            vec![
                b"REC.USER.SET".to_vec(),
                id.clone(),
                b"f".to_vec(),
                b"v".to_vec(),
                b"g".to_vec(),
                b"w".to_vec(),
            ],
            vec![b"REC.USER.DEL".to_vec(), id.clone()],
        ];
        for f in forms {
            let mut c = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
            c.extend(f.iter().cloned());
            let r = call(&mut con, &c);
            assert_eq!(
                as_array(&r).iter().map(as_bytes).collect::<Vec<_>>(),
                vec![id.clone()],
                "COMMAND GETKEYS {}",
                show_cmd(&f)
            );
        }
    }
    // first/last/step = 1/1/1 in COMMAND INFO.
    for name in [
        "rec.track",
        "rec.get",
        "rec.get_ro",
        "rec.user.get",
        "rec.user.set",
        "rec.user.del",
    ] {
        let r = call(&mut con, &["COMMAND", "INFO", name]);
        let info = &as_array(&r)[0];
        let a = as_array(info);
        assert_eq!(as_str(&a[0]).to_lowercase(), name);
        assert_eq!(
            (as_i64(&a[3]), as_i64(&a[4]), as_i64(&a[5])),
            (1, 1, 1),
            "{name} key spec: {info:?}"
        );
    }
    // Node-wide commands have no keys.
    for c in [
        vec!["REC.POPULAR"],
        vec!["REC.ITEM.GET", "x"],
        vec!["REC.MODEL.LIST"],
    ] {
        let r = call(&mut con, &c);
        assert!(!is_err(&r), "{c:?}: {r:?}");
        let mut g = vec!["COMMAND", "GETKEYS"];
        g.extend(c.iter().copied());
        let r = call(&mut con, &g);
        assert!(
            is_err(&r) || as_array(&r).is_empty(),
            "{c:?} declares keys: {r:?}"
        );
    }
}
