//! Replicas end up in exactly the primary's state: live replication of a random workload (most
//! events without TS, so the module must replicate effects) and a full sync afterwards.

mod common;

use common::*;
use redis::Value;

#[test]
fn replicas_match_primary() {
    let primary = Server::start();
    let live = Server::replica_of(&primary);
    let mut p = primary.connection();

    let mut rng = Rng::new(42);
    let mut w = Workload::new(400, 300);
    w.setup(&mut rng);
    w.events(&mut rng, 12_000, 0.1);
    let tracks = w.commands.iter().filter(|c| c[0] == b"REC.TRACK").count();
    assert!(tracks >= 10_000, "{tracks} events");
    let split = w.commands.len() / 2;
    run_all(&mut p, &w.commands[..split]);
    // Recommendations served in between (REC.GET is a write command on the primary), and
    // events attributed to them.
    let mut attributed = Vec::new();
    for u in w.users.iter().take(20) {
        let r = call(&mut p, &["REC.GET", u, "COUNT", "5"]);
        let rec_id = as_str(&field(&r, "rec_id"));
        if let Some(item) = rec_ids(&r).first() {
            attributed.push(args(&["REC.TRACK", u, item, "click", "REC", &rec_id]));
        }
    }
    run_all(&mut p, &attributed);
    run_all(&mut p, &w.commands[split..]);
    assert_eq!(call(&mut p, &["REC.MODEL.DEL", "m3"]), Value::Int(1));
    assert_eq!(
        call(&mut p, &["REC.MODEL.SET", "default", "POPULARITY", "0.2"]),
        Value::Int(0)
    );

    let full = Server::replica_of(&primary);
    wait_replica_synced(&primary, &live);
    wait_replica_synced(&primary, &full);

    let (users, items) = w.sample(60);
    let mut l = live.connection();
    let mut f = full.connection();
    let want = state_digest(&mut p, &users, &items);
    assert_digest_meaningful(&want);
    assert_digest_eq(
        &want,
        &state_digest_ro(&mut p, &users, &items),
        "primary GET vs GET_RO",
    );
    wait_replica_synced(&primary, &live);
    wait_replica_synced(&primary, &full);
    assert_digest_eq(
        &want,
        &state_digest_ro(&mut l, &users, &items),
        "live replica",
    );
    assert_digest_eq(
        &want,
        &state_digest_ro(&mut f, &users, &items),
        "full-sync replica",
    );

    // Catalog details of every item, not only the sample.
    for it in &w.items {
        let a = call(&mut p, &["REC.ITEM.GET", it]);
        assert_eq!(a, call(&mut l, &["REC.ITEM.GET", it]), "live replica {it}");
        assert_eq!(a, call(&mut f, &["REC.ITEM.GET", it]), "full replica {it}");
    }
    for u in &w.users {
        let a = call(&mut p, &["REC.USER.GET", u]);
        assert_eq!(a, call(&mut l, &["REC.USER.GET", u]), "live replica {u}");
        assert_eq!(a, call(&mut f, &["REC.USER.GET", u]), "full replica {u}");
    }

    // Replicas are read-only: writes (REC.GET included) are refused there.
    for c in [
        vec!["REC.TRACK", "user1", "item1", "view"],
        vec!["REC.ITEM.SET", "x"],
        vec!["REC.GET", "user1"],
    ] {
        let r = call(&mut l, &c);
        let t = err_text(&r).unwrap_or_default();
        assert!(t.starts_with("READONLY"), "{c:?} on a replica: {r:?}");
    }

    // More live traffic after the full sync reaches both.
    let mut w2 = Workload::new(400, 300);
    w2.events(&mut rng, 2_000, 0.0);
    run_all(&mut p, &w2.commands);
    assert_ok(&call(&mut p, &["FLUSHALL"]));
    run_all(&mut p, &w2.commands[..1000]);
    wait_replica_synced(&primary, &live);
    wait_replica_synced(&primary, &full);
    let want = state_digest_ro(&mut p, &users, &items);
    assert_digest_eq(
        &want,
        &state_digest_ro(&mut l, &users, &items),
        "live replica, 2nd",
    );
    assert_digest_eq(
        &want,
        &state_digest_ro(&mut f, &users, &items),
        "full replica, 2nd",
    );
}
