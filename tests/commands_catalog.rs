//! Catalog, model, user and configuration commands: CRUD, replies, validation and arity.

mod common;

use common::*;
use redis::{Connection, Value};

fn item(con: &mut Connection, id: &str) -> Value {
    call(con, &["REC.ITEM.GET", id])
}

fn tags(v: &Value) -> Vec<String> {
    ids(&field(v, "tags"))
}

#[test]
fn item_set_get_del() {
    let srv = Server::start();
    let mut con = srv.connection();

    let before = now_ms();
    let r = call(
        &mut con,
        &[
            "REC.ITEM.SET",
            "sku1",
            "CATEGORY",
            "shoes",
            "TAGS",
            "red,running",
            "PROPS",
            r#"{"price":59}"#,
        ],
    );
    assert_eq!(r, Value::Int(1), "new item");
    let after = now_ms();

    let v = item(&mut con, "sku1");
    assert_eq!(
        map_keys(&v),
        [
            "id",
            "category",
            "tags",
            "created",
            "available",
            "props",
            "popularity",
            "events"
        ],
        "field order of REC.ITEM.GET"
    );
    assert_eq!(as_str(&field(&v, "id")), "sku1");
    assert_eq!(as_str(&field(&v, "category")), "shoes");
    assert_eq!(tags(&v), ["red", "running"]);
    let created = as_i64(&field(&v, "created"));
    assert!(
        created >= before - 1000 && created <= after + 1000,
        "CREATED defaults to now: {created} not in [{before}, {after}]"
    );
    assert_eq!(as_i64(&field(&v, "available")), 1);
    assert_eq!(as_str(&field(&v, "props")), r#"{"price":59}"#);
    assert_eq!(as_f64(&field(&v, "popularity")), 0.0);
    assert_eq!(as_i64(&field(&v, "events")), 0);

    // Update: 0, and only the given fields change.
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "sku1", "AVAILABLE", "0"]),
        Value::Int(0)
    );
    let v = item(&mut con, "sku1");
    assert_eq!(as_str(&field(&v, "category")), "shoes");
    assert_eq!(tags(&v), ["red", "running"]);
    assert_eq!(as_i64(&field(&v, "created")), created);
    assert_eq!(as_i64(&field(&v, "available")), 0);
    assert_eq!(as_str(&field(&v, "props")), r#"{"price":59}"#);

    assert_eq!(
        call(
            &mut con,
            &[
                "REC.ITEM.SET",
                "sku1",
                "CREATED",
                "12345",
                "available",
                "1",
                "tags",
                "blue"
            ]
        ),
        Value::Int(0),
        "keywords are case-insensitive"
    );
    let v = item(&mut con, "sku1");
    assert_eq!(as_i64(&field(&v, "created")), 12345);
    assert_eq!(as_i64(&field(&v, "available")), 1);
    assert_eq!(tags(&v), ["blue"]);
    assert_eq!(as_str(&field(&v, "category")), "shoes");

    // Empty TAGS clears the tags, empty CATEGORY clears the category.
    assert_eq!(
        call(
            &mut con,
            &["REC.ITEM.SET", "sku1", "TAGS", "", "CATEGORY", ""]
        ),
        Value::Int(0)
    );
    let v = item(&mut con, "sku1");
    assert!(tags(&v).is_empty(), "{v:?}");
    assert_eq!(field(&v, "category"), Value::Nil);
    assert_eq!(as_str(&field(&v, "props")), r#"{"price":59}"#);

    // PROPS is stored exactly as given (whitespace, nesting, unicode).
    let props = r#"{ "a" : [1, {"b": null}], "s": "é\u00e9" , "n": -1.5e3 }"#;
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "sku1", "PROPS", props]),
        Value::Int(0)
    );
    assert_eq!(as_str(&field(&item(&mut con, "sku1"), "props")), props);
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "sku1", "PROPS", "{}"]),
        Value::Int(0)
    );
    assert_eq!(as_str(&field(&item(&mut con, "sku1"), "props")), "{}");

    // An item without props has nil props.
    assert_eq!(call(&mut con, &["REC.ITEM.SET", "plain"]), Value::Int(1));
    let v = item(&mut con, "plain");
    assert_eq!(field(&v, "props"), Value::Nil);
    assert_eq!(field(&v, "category"), Value::Nil);
    assert!(tags(&v).is_empty());

    // Binary-safe ids.
    let bin: &[u8] = b"bin\0ary{}\xff";
    let r = call(
        &mut con,
        &[b"REC.ITEM.SET".as_slice(), bin, b"CATEGORY", b"c\0at"],
    );
    assert_eq!(r, Value::Int(1));
    let v = call(&mut con, &[b"REC.ITEM.GET".as_slice(), bin]);
    assert_eq!(as_bytes(&field(&v, "id")), bin);
    assert_eq!(as_bytes(&field(&v, "category")), b"c\0at");

    // Delete.
    assert_eq!(call(&mut con, &["REC.ITEM.DEL", "sku1"]), Value::Int(1));
    assert_eq!(call(&mut con, &["REC.ITEM.DEL", "sku1"]), Value::Int(0));
    assert_eq!(item(&mut con, "sku1"), Value::Nil);
    assert_eq!(call(&mut con, &["REC.ITEM.DEL", "never"]), Value::Int(0));
    assert_eq!(item(&mut con, "never"), Value::Nil);
    // Set again: a new item.
    assert_eq!(call(&mut con, &["REC.ITEM.SET", "sku1"]), Value::Int(1));
    let v = item(&mut con, "sku1");
    assert_eq!(
        field(&v, "category"),
        Value::Nil,
        "a re-created item starts fresh"
    );
    assert_eq!(as_i64(&field(&v, "events")), 0);
}

#[test]
fn item_set_errors_change_nothing() {
    let srv = Server::start();
    let mut con = srv.connection();
    assert_eq!(
        call(
            &mut con,
            &["REC.ITEM.SET", "x", "CATEGORY", "c", "TAGS", "a,b"]
        ),
        Value::Int(1)
    );
    let before = item(&mut con, "x");

    let long_id = "i".repeat(257);
    let max_id = "i".repeat(256);
    let too_many_tags = (0..33)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let big_props = format!("{{\"a\":\"{}\"}}", "x".repeat(4096));
    let bad: Vec<Vec<&str>> = vec![
        vec!["COLOR", "red"],                   // unknown option
        vec!["CATEGORY", "a", "CATEGORY", "b"], // repeated option
        vec!["category", "a", "CATEGORY", "b"], // repeated, other case
        vec!["CATEGORY"],                       // option without value
        vec!["CATEGORY", "c", "TAGS"],          // option without value
        vec!["CREATED", "abc"],                 // bad number
        vec!["CREATED", "12x"],
        vec!["CREATED", ""],
        vec!["CREATED", "1.5"],
        vec!["CREATED", "99999999999999999999999"],
        vec!["AVAILABLE", "2"],
        vec!["AVAILABLE", "yes"],
        vec!["AVAILABLE", "-1"],
        vec!["PROPS", "{bad"],  // bad JSON
        vec!["PROPS", "[1,2]"], // not an object
        vec!["PROPS", "\"str\""],
        vec!["PROPS", "5"],
        vec!["PROPS", ""],
        vec!["PROPS", "{\"a\":1} trailing"],
        vec!["PROPS", &big_props],    // over rec.max-props-bytes
        vec!["TAGS", &too_many_tags], // over rec.max-tags
        vec!["CATEGORY", &long_id],   // over rec.max-id-length
    ];
    for extra in &bad {
        for id in ["x", "fresh"] {
            let mut c = vec!["REC.ITEM.SET", id, "CATEGORY", "changed"];
            c.extend(extra.iter().copied());
            // CATEGORY given twice in most vectors is itself an error; use a form without it too.
            let r1 = call(&mut con, &c);
            assert_err(&r1, "");
            let mut c2 = vec!["REC.ITEM.SET", id];
            c2.extend(extra.iter().copied());
            let r2 = call(&mut con, &c2);
            assert_err(&r2, "");
            assert!(
                err_text(&r2).unwrap().contains("expected"),
                "error should say what is expected: {r2:?} for {c2:?}"
            );
        }
        assert_eq!(item(&mut con, "x"), before, "failed {extra:?} changed x");
        assert_eq!(
            item(&mut con, "fresh"),
            Value::Nil,
            "failed {extra:?} created an item"
        );
    }

    // Ids: 1..=256 bytes.
    assert_err(&call(&mut con, &["REC.ITEM.SET", &long_id]), "");
    assert_err(&call(&mut con, &["REC.ITEM.SET", ""]), "");
    let r = item(&mut con, &long_id);
    assert!(r == Value::Nil || is_err(&r), "{r:?}");
    assert_eq!(call(&mut con, &["REC.ITEM.SET", &max_id]), Value::Int(1));
    // 32 tags and 4096 bytes of props are fine.
    let tags32 = (0..32)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let props4096 = format!("{{\"a\":\"{}\"}}", "x".repeat(4096 - 8));
    assert_eq!(props4096.len(), 4096);
    assert_eq!(
        call(
            &mut con,
            &["REC.ITEM.SET", "x", "TAGS", &tags32, "PROPS", &props4096]
        ),
        Value::Int(0)
    );
    assert_eq!(tags(&item(&mut con, "x")).len(), 32);

    // Arity.
    assert_arity_err(&call(&mut con, &["REC.ITEM.SET"]), "rec.item.set");
    assert_arity_err(&call(&mut con, &["REC.ITEM.GET"]), "rec.item.get");
    assert_arity_err(&call(&mut con, &["REC.ITEM.GET", "a", "b"]), "rec.item.get");
    assert_arity_err(&call(&mut con, &["REC.ITEM.DEL"]), "rec.item.del");
    assert_arity_err(&call(&mut con, &["REC.ITEM.DEL", "a", "b"]), "rec.item.del");
    assert_eq!(as_str(&call(&mut con, &["PING"])), "PONG");
}

#[test]
fn track_creates_bare_items() {
    let srv = Server::start();
    let mut con = srv.connection();
    assert_ok(&call(&mut con, &["REC.TRACK", "u1", "newitem", "view"]));
    let v = item(&mut con, "newitem");
    assert_ne!(v, Value::Nil, "REC.TRACK creates unknown items");
    assert_eq!(as_str(&field(&v, "id")), "newitem");
    assert_eq!(
        field(&v, "category"),
        Value::Nil,
        "bare item has no category"
    );
    assert!(tags(&v).is_empty());
    assert_eq!(as_i64(&field(&v, "events")), 1);
    assert!(as_f64(&field(&v, "popularity")) > 0.0);
    assert_eq!(as_i64(&field(&v, "available")), 1);
    // Setting it later counts as an update.
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "newitem", "CATEGORY", "c1"]),
        Value::Int(0)
    );
    let v = item(&mut con, "newitem");
    assert_eq!(as_str(&field(&v, "category")), "c1");
    assert_eq!(as_i64(&field(&v, "events")), 1, "events survive ITEM.SET");
}

#[test]
fn track_errors_change_nothing() {
    let srv = Server::start();
    let mut con = srv.connection();
    let future = (now_ms() + 2 * 86_400_000).to_string();
    let bad: Vec<Vec<&str>> = vec![
        vec!["nosuchaction"],
        vec!["rating"], // VALUE required
        vec!["rating", "VALUE", "6"],
        vec!["rating", "VALUE", "0"],
        vec!["rating", "VALUE", "abc"],
        vec!["view", "VALUE", "nan"],
        vec!["view", "VALUE", "inf"],
        vec!["view", "VALUE", "-inf"],
        vec!["view", "VALUE", "abc"],
        vec!["view", "VALUE", ""],
        vec!["view", "VALUE"],
        vec!["view", "TS", "abc"],
        vec!["view", "TS", &future],
        vec!["view", "TS", "1.5"],
        vec!["view", "TS"],
        vec!["view", "REC", "garbage"],
        vec!["view", "REC", ""],
        vec!["view", "COLOR", "red"],
        vec!["view", "VALUE", "1", "VALUE", "2"],
        vec!["view", "TS", "1000", "TS", "1000"],
    ];
    for extra in &bad {
        let mut c = vec!["REC.TRACK", "u1", "i1"];
        c.extend(extra.iter().copied());
        let r = call(&mut con, &c);
        assert_err(&r, "");
        assert_eq!(
            call(&mut con, &["REC.USER.GET", "u1"]),
            Value::Nil,
            "{c:?} created the user"
        );
        assert_eq!(item(&mut con, "i1"), Value::Nil, "{c:?} created the item");
        assert_eq!(as_i64(&call(&mut con, &["DBSIZE"])), 0, "{c:?} wrote a key");
    }
    let long_id = "u".repeat(257);
    assert_err(&call(&mut con, &["REC.TRACK", &long_id, "i1", "view"]), "");
    assert_err(&call(&mut con, &["REC.TRACK", "u1", &long_id, "view"]), "");
    assert_err(&call(&mut con, &["REC.TRACK", "", "i1", "view"]), "");
    assert_err(&call(&mut con, &["REC.TRACK", "u1", "", "view"]), "");
    assert_arity_err(&call(&mut con, &["REC.TRACK", "u1", "i1"]), "rec.track");
    assert_arity_err(&call(&mut con, &["REC.TRACK"]), "rec.track");
    assert_eq!(as_i64(&call(&mut con, &["DBSIZE"])), 0);

    // Valid forms.
    let ts = (now_ms() - 3_600_000).to_string();
    let soon = (now_ms() + 3_600_000).to_string();
    for extra in [
        vec!["view"],
        vec!["VIEW"],
        vec!["click", "VALUE", "2.5"],
        vec!["rating", "VALUE", "5"],
        vec!["rating", "VALUE", "1"],
        vec!["purchase", "TS", ts.as_str()],
        vec!["add_to_cart", "TS", soon.as_str()],
        vec!["dislike"],
        vec!["view", "REC", "r1:1700000000000:default"],
    ] {
        let mut c = vec!["REC.TRACK", "u1", "i1"];
        c.extend(extra.iter().copied());
        assert_ok(&call(&mut con, &c));
    }
}

#[test]
fn users() {
    let srv = Server::start();
    let mut con = srv.connection();
    assert_eq!(call(&mut con, &["REC.USER.GET", "nobody"]), Value::Nil);
    assert_eq!(call(&mut con, &["REC.USER.DEL", "nobody"]), Value::Int(0));

    assert_eq!(
        call(
            &mut con,
            &["REC.USER.SET", "u1", "age", "30", "country", "fr"]
        ),
        Value::Int(2)
    );
    assert_eq!(
        call(&mut con, &["REC.USER.SET", "u1", "age", "31"]),
        Value::Int(0)
    );
    assert_eq!(
        call(&mut con, &["REC.USER.SET", "u1", "age", "32", "lang", "en"]),
        Value::Int(1)
    );
    let v = call(&mut con, &["REC.USER.GET", "u1"]);
    assert_eq!(
        map_keys(&v),
        [
            "user",
            "events",
            "actions",
            "categories",
            "recent",
            "purchased",
            "disliked",
            "last_seen",
            "features"
        ],
        "field order of REC.USER.GET"
    );
    assert_eq!(as_str(&field(&v, "user")), "u1");
    assert_eq!(as_i64(&field(&v, "events")), 0);
    let features: Vec<(String, String)> = map_entries(&field(&v, "features"))
        .into_iter()
        .map(|(k, v)| (k, as_str(&v)))
        .collect();
    let mut sorted = features.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("age".to_string(), "32".to_string()),
            ("country".to_string(), "fr".to_string()),
            ("lang".to_string(), "en".to_string())
        ]
    );

    // Events.
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "i1", "CATEGORY", "shoes"]),
        Value::Int(1)
    );
    let t0 = 1_700_000_000_000i64;
    for (i, (it, action, extra)) in [
        ("i1", "view", None),
        ("i1", "purchase", None),
        ("i2", "click", None),
        ("i3", "dislike", None),
        ("i4", "rating", Some("4")),
        ("i2", "view", None),
    ]
    .iter()
    .enumerate()
    {
        let ts = (t0 + i as i64 * 1000).to_string();
        let mut c = vec!["REC.TRACK", "u1", it, action, "TS", &ts];
        if let Some(x) = extra {
            c.extend(["VALUE", x]);
        }
        assert_ok(&call(&mut con, &c));
    }
    let v = call(&mut con, &["REC.USER.GET", "u1"]);
    assert_eq!(as_i64(&field(&v, "events")), 6);
    let actions: Vec<(String, i64)> = map_entries(&field(&v, "actions"))
        .into_iter()
        .map(|(k, v)| (k, as_i64(&v)))
        .filter(|(_, n)| *n != 0)
        .collect();
    let mut actions_sorted = actions.clone();
    actions_sorted.sort();
    assert_eq!(
        actions_sorted,
        [
            ("click".to_string(), 1),
            ("dislike".to_string(), 1),
            ("purchase".to_string(), 1),
            ("rating".to_string(), 1),
            ("view".to_string(), 2)
        ]
    );
    let recent = ids(&field(&v, "recent"));
    assert_eq!(recent[0], "i2", "recent is newest first: {recent:?}");
    assert!(recent.contains(&"i1".to_string()));
    let mut dedup = recent.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        recent.len(),
        "recent items are distinct: {recent:?}"
    );
    assert_eq!(as_i64(&field(&v, "purchased")), 1);
    assert_eq!(as_i64(&field(&v, "disliked")), 1);
    assert_eq!(as_i64(&field(&v, "last_seen")), t0 + 5000);
    let cats = map_entries(&field(&v, "categories"));
    assert_eq!(
        cats.first().map(|c| c.0.as_str()),
        Some("shoes"),
        "{cats:?}"
    );
    assert_eq!(map_entries(&field(&v, "features")).len(), 3);

    // Validation.
    let big = "v".repeat(1025);
    assert_err(&call(&mut con, &["REC.USER.SET", "u1", "f", &big]), "");
    assert_err(&call(&mut con, &["REC.USER.SET", "u1", "f", "v", "g"]), "");
    let mut many = vec!["REC.USER.SET".to_string(), "u2".to_string()];
    for i in 0..65 {
        many.push(format!("f{i}"));
        many.push("v".to_string());
    }
    assert_err(&call(&mut con, &many), "");
    assert_eq!(call(&mut con, &["REC.USER.GET", "u2"]), Value::Nil);
    many.truncate(2 + 2 * 64);
    assert_eq!(call(&mut con, &many), Value::Int(64));
    assert_err(
        &call(&mut con, &["REC.USER.SET", "u2", "one-more", "v"]),
        "",
    );
    let ok_value = "v".repeat(1024);
    assert_eq!(
        call(&mut con, &["REC.USER.SET", "u1", "f", &ok_value]),
        Value::Int(1)
    );
    assert_arity_err(
        &call(&mut con, &["REC.USER.SET", "u1", "f"]),
        "rec.user.set",
    );
    assert_arity_err(&call(&mut con, &["REC.USER.GET"]), "rec.user.get");
    assert_arity_err(&call(&mut con, &["REC.USER.GET", "a", "b"]), "rec.user.get");
    assert_arity_err(&call(&mut con, &["REC.USER.DEL"]), "rec.user.del");

    // Delete.
    assert_eq!(call(&mut con, &["REC.USER.DEL", "u1"]), Value::Int(1));
    assert_eq!(call(&mut con, &["REC.USER.DEL", "u1"]), Value::Int(0));
    assert_eq!(call(&mut con, &["REC.USER.GET", "u1"]), Value::Nil);
    // Items it touched stay.
    assert_ne!(item(&mut con, "i2"), Value::Nil);
}

fn model(con: &mut Connection, name: &str) -> Value {
    call(con, &["REC.MODEL.GET", name])
}

fn model_nums(v: &Value) -> (f64, f64, f64, f64, i64) {
    (
        as_f64(&field(v, "cooc")),
        as_f64(&field(v, "affinity")),
        as_f64(&field(v, "popularity")),
        as_f64(&field(v, "recency")),
        as_i64(&field(v, "builtin")),
    )
}

#[test]
fn models() {
    let srv = Server::start();
    let mut con = srv.connection();
    assert_eq!(
        ids(&call(&mut con, &["REC.MODEL.LIST"])),
        ["default", "popular"]
    );
    let d = model(&mut con, "default");
    assert_eq!(
        map_keys(&d),
        [
            "name",
            "cooc",
            "affinity",
            "popularity",
            "recency",
            "builtin"
        ]
    );
    assert_eq!(as_str(&field(&d, "name")), "default");
    assert_eq!(model_nums(&d), (1.0, 0.5, 0.1, 604800.0, 1));
    let p = model(&mut con, "popular");
    let (c, a, pop, _, b) = model_nums(&p);
    assert_eq!(
        (c, a, b),
        (0.0, 0.0, 1),
        "popular is popularity only: {p:?}"
    );
    assert!(pop > 0.0);
    assert_eq!(model(&mut con, "nosuch"), Value::Nil);

    // Create with defaults, update only what is given.
    assert_eq!(call(&mut con, &["REC.MODEL.SET", "m1"]), Value::Int(1));
    assert_eq!(
        model_nums(&model(&mut con, "m1")),
        (1.0, 0.5, 0.1, 604800.0, 0)
    );
    assert_eq!(
        call(&mut con, &["REC.MODEL.SET", "m1", "COOC", "2"]),
        Value::Int(0)
    );
    assert_eq!(
        model_nums(&model(&mut con, "m1")),
        (2.0, 0.5, 0.1, 604800.0, 0)
    );
    assert_eq!(
        call(
            &mut con,
            &[
                "REC.MODEL.SET",
                "m1",
                "affinity",
                "0",
                "POPULARITY",
                "1e6",
                "RECENCY",
                "60"
            ]
        ),
        Value::Int(0)
    );
    assert_eq!(model_nums(&model(&mut con, "m1")), (2.0, 0.0, 1e6, 60.0, 0));
    assert_eq!(
        call(
            &mut con,
            &[
                "REC.MODEL.SET",
                "m2",
                "COOC",
                "0.25",
                "AFFINITY",
                "3",
                "POPULARITY",
                "0",
                "RECENCY",
                "3600"
            ]
        ),
        Value::Int(1)
    );
    assert_eq!(
        model_nums(&model(&mut con, "m2")),
        (0.25, 3.0, 0.0, 3600.0, 0)
    );

    // Validation: nothing changes on error.
    let m1 = model(&mut con, "m1");
    for extra in [
        vec!["COOC", "-1"],
        vec!["COOC", "1000001"],
        vec!["COOC", "1e7"],
        vec!["COOC", "nan"],
        vec!["COOC", "inf"],
        vec!["COOC", "abc"],
        vec!["COOC", ""],
        vec!["COOC"],
        vec!["AFFINITY", "-0.1"],
        vec!["POPULARITY", "-inf"],
        vec!["RECENCY", "0"],
        vec!["RECENCY", "-5"],
        vec!["RECENCY", "nan"],
        vec!["RECENCY", "inf"],
        vec!["COOC", "1", "COOC", "2"],
        vec!["FOO", "1"],
        vec!["COOC", "3", "FOO", "1"],
    ] {
        for name in ["m1", "newmodel"] {
            let mut c = vec!["REC.MODEL.SET", name];
            c.extend(extra.iter().copied());
            assert_err(&call(&mut con, &c), "");
        }
        assert_eq!(model(&mut con, "m1"), m1, "failed {extra:?} changed m1");
        assert_eq!(model(&mut con, "newmodel"), Value::Nil);
    }
    for bad_name in ["bad name", "bad!", "", "x/y", "ü"] {
        assert_err(&call(&mut con, &["REC.MODEL.SET", bad_name]), "");
    }
    let n64 = "a".repeat(64);
    let n65 = "a".repeat(65);
    assert_err(&call(&mut con, &["REC.MODEL.SET", &n65]), "");
    assert_eq!(call(&mut con, &["REC.MODEL.SET", &n64]), Value::Int(1));
    assert_eq!(call(&mut con, &["REC.MODEL.SET", "A-z_0.9"]), Value::Int(1));

    // Built-ins: default may be tuned, popular is read-only, neither is deleted.
    assert_eq!(
        call(&mut con, &["REC.MODEL.SET", "default", "COOC", "3"]),
        Value::Int(0)
    );
    assert_eq!(
        model_nums(&model(&mut con, "default")),
        (3.0, 0.5, 0.1, 604800.0, 1)
    );
    let popular = model(&mut con, "popular");
    assert_err(
        &call(&mut con, &["REC.MODEL.SET", "popular", "COOC", "1"]),
        "",
    );
    assert_eq!(model(&mut con, "popular"), popular);
    for builtin in ["default", "popular"] {
        let r = call(&mut con, &["REC.MODEL.DEL", builtin]);
        assert!(
            r == Value::Int(0) || err_text(&r).is_some_and(|t| t.starts_with("ERR")),
            "REC.MODEL.DEL {builtin}: {r:?}"
        );
        assert_ne!(
            model(&mut con, builtin),
            Value::Nil,
            "{builtin} was deleted"
        );
    }

    // LIST is sorted.
    assert_eq!(call(&mut con, &["REC.MODEL.SET", "zeta"]), Value::Int(1));
    assert_eq!(call(&mut con, &["REC.MODEL.SET", "Beta"]), Value::Int(1));
    let list = ids(&call(&mut con, &["REC.MODEL.LIST"]));
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted);
    assert_eq!(list.len(), 8, "{list:?}");

    // Delete.
    assert_eq!(call(&mut con, &["REC.MODEL.DEL", "m1"]), Value::Int(1));
    assert_eq!(call(&mut con, &["REC.MODEL.DEL", "m1"]), Value::Int(0));
    assert_eq!(model(&mut con, "m1"), Value::Nil);

    // At most rec.max-models (64), built-ins included.
    let have = ids(&call(&mut con, &["REC.MODEL.LIST"])).len();
    for i in 0..(64 - have) {
        assert_eq!(
            call(&mut con, &["REC.MODEL.SET", &format!("fill{i}")]),
            Value::Int(1)
        );
    }
    assert_eq!(ids(&call(&mut con, &["REC.MODEL.LIST"])).len(), 64);
    assert_err(&call(&mut con, &["REC.MODEL.SET", "onetoomany"]), "");
    assert_eq!(model(&mut con, "onetoomany"), Value::Nil);
    assert_eq!(
        call(&mut con, &["REC.MODEL.SET", "fill0", "COOC", "2"]),
        Value::Int(0)
    );

    assert_arity_err(&call(&mut con, &["REC.MODEL.SET"]), "rec.model.set");
    assert_arity_err(&call(&mut con, &["REC.MODEL.GET"]), "rec.model.get");
    assert_arity_err(
        &call(&mut con, &["REC.MODEL.GET", "a", "b"]),
        "rec.model.get",
    );
    assert_arity_err(&call(&mut con, &["REC.MODEL.DEL"]), "rec.model.del");
    assert_arity_err(&call(&mut con, &["REC.MODEL.LIST", "x"]), "rec.model.list");
}

/// (name, default, min, max) of every numeric parameter in docs/commands.md.
const NUMERIC_CONFIGS: &[(&str, i64, i64, i64)] = &[
    ("rec.history-size", 100, 1, 10000),
    ("rec.cooc-window", 20, 1, 200),
    ("rec.neighbors", 100, 1, 1000),
    ("rec.popularity-half-life", 86400, 1, 31536000),
    ("rec.max-count", 100, 1, 1000),
    ("rec.max-per-category", 3, 0, 1000),
    ("rec.max-id-length", 256, 1, 65536),
    ("rec.max-items", 1000000, 1, 100000000),
    ("rec.max-excluded", 500, 0, 100000),
    ("rec.user-categories", 32, 1, 1000),
    ("rec.max-tags", 32, 0, 1000),
    ("rec.max-props-bytes", 4096, 0, 1048576),
    ("rec.max-user-features", 64, 0, 10000),
    ("rec.max-models", 64, 2, 10000),
    ("rec.max-scan", 5000, 10, 1000000),
];

const DEFAULT_WEIGHTS: &str = "view:1,click:2,add_to_cart:4,purchase:8,rating:2,dislike:-4";

fn config_get(con: &mut Connection, name: &str) -> String {
    let v = call(con, &["CONFIG", "GET", name]);
    let e = map_entries(&v);
    assert_eq!(e.len(), 1, "CONFIG GET {name}: {v:?}");
    assert_eq!(e[0].0, name);
    as_str(&e[0].1)
}

fn config_set(con: &mut Connection, name: &str, value: &str) -> Value {
    call(con, &["CONFIG", "SET", name, value])
}

#[test]
fn config_parameters() {
    let srv = Server::start();
    let mut con = srv.connection();

    let all = map_entries(&call(&mut con, &["CONFIG", "GET", "rec.*"]));
    let names: Vec<String> = all.iter().map(|(k, _)| k.clone()).collect();
    let mut want: Vec<String> = NUMERIC_CONFIGS.iter().map(|c| c.0.to_string()).collect();
    want.push("rec.action-weights".into());
    want.push("rec.key-prefix".into());
    for w in &want {
        assert!(names.contains(w), "CONFIG GET rec.* lacks {w}: {names:?}");
    }

    for &(name, default, min, max) in NUMERIC_CONFIGS {
        assert_eq!(
            config_get(&mut con, name),
            default.to_string(),
            "default of {name}"
        );
        for v in [min, max, default] {
            assert_ok(&config_set(&mut con, name, &v.to_string()));
            assert_eq!(
                config_get(&mut con, name),
                v.to_string(),
                "{name} read back"
            );
        }
        for bad in [
            (min - 1).to_string(),
            (max + 1).to_string(),
            "abc".to_string(),
            "".to_string(),
            "1.5".to_string(),
            "99999999999999999999999".to_string(),
        ] {
            let r = config_set(&mut con, name, &bad);
            assert!(is_err(&r), "CONFIG SET {name} {bad:?} accepted: {r:?}");
            assert_eq!(
                config_get(&mut con, name),
                default.to_string(),
                "{name} after {bad:?}"
            );
        }
    }

    assert_eq!(config_get(&mut con, "rec.action-weights"), DEFAULT_WEIGHTS);
    let custom = "view:1,click:3,add_to_cart:4,purchase:10,rating:2,dislike:-5,share:2";
    assert_ok(&config_set(&mut con, "rec.action-weights", custom));
    assert_eq!(config_get(&mut con, "rec.action-weights"), custom);
    // The new action is usable, and counted.
    assert_ok(&call(&mut con, &["REC.TRACK", "u", "i", "share"]));
    for bad in ["view", "view:abc", ":1", "view:nan", "view:inf"] {
        let r = config_set(&mut con, "rec.action-weights", bad);
        assert!(
            is_err(&r),
            "CONFIG SET rec.action-weights {bad:?} accepted: {r:?}"
        );
        assert_eq!(config_get(&mut con, "rec.action-weights"), custom);
    }
    assert_ok(&config_set(&mut con, "rec.action-weights", DEFAULT_WEIGHTS));
    assert_eq!(config_get(&mut con, "rec.action-weights"), DEFAULT_WEIGHTS);
    assert_err(&call(&mut con, &["REC.TRACK", "u", "i", "share"]), "");

    assert_eq!(config_get(&mut con, "rec.key-prefix"), "rec:");
    assert_ok(&config_set(&mut con, "rec.key-prefix", "myapp:rec:"));
    assert_eq!(config_get(&mut con, "rec.key-prefix"), "myapp:rec:");
    for bad in ["a{b", "a}b", "{}"] {
        let r = config_set(&mut con, "rec.key-prefix", bad);
        assert!(
            is_err(&r),
            "CONFIG SET rec.key-prefix {bad:?} accepted: {r:?}"
        );
        assert_eq!(config_get(&mut con, "rec.key-prefix"), "myapp:rec:");
    }
    assert_ok(&config_set(&mut con, "rec.key-prefix", "rec:"));
}

#[test]
fn configs_take_effect() {
    let srv = Server::start();
    let mut con = srv.connection();
    for i in 0..10 {
        assert_ok(&call(
            &mut con,
            &["REC.TRACK", "u", &format!("i{i}"), "view"],
        ));
    }
    // rec.max-count bounds COUNT.
    assert_ok(&config_set(&mut con, "rec.max-count", "5"));
    assert_err(&call(&mut con, &["REC.POPULAR", "COUNT", "6"]), "");
    assert_eq!(
        ids(&call(&mut con, &["REC.POPULAR", "COUNT", "5"])).len(),
        5
    );
    assert_err(&call(&mut con, &["REC.GET", "u", "COUNT", "6"]), "");
    assert_ok(&config_set(&mut con, "rec.max-count", "100"));
    assert_eq!(
        ids(&call(&mut con, &["REC.POPULAR", "COUNT", "6"])).len(),
        6
    );

    // rec.max-id-length bounds ids.
    assert_ok(&config_set(&mut con, "rec.max-id-length", "4"));
    assert_err(&call(&mut con, &["REC.ITEM.SET", "abcde"]), "");
    assert_eq!(call(&mut con, &["REC.ITEM.SET", "abcd"]), Value::Int(1));
    assert_ok(&config_set(&mut con, "rec.max-id-length", "256"));

    // rec.max-items bounds the catalog (i0..i9 and abcd make 11).
    assert_ok(&config_set(&mut con, "rec.max-items", "11"));
    assert_err(&call(&mut con, &["REC.ITEM.SET", "twelfth"]), "");
    assert_eq!(call(&mut con, &["REC.ITEM.GET", "twelfth"]), Value::Nil);
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "abcd", "CATEGORY", "x"]),
        Value::Int(0)
    );
    assert_ok(&config_set(&mut con, "rec.max-items", "1000000"));
    assert_eq!(call(&mut con, &["REC.ITEM.SET", "twelfth"]), Value::Int(1));

    // rec.max-tags, rec.max-props-bytes, rec.max-user-features.
    assert_ok(&config_set(&mut con, "rec.max-tags", "1"));
    assert_err(
        &call(&mut con, &["REC.ITEM.SET", "abcd", "TAGS", "a,b"]),
        "",
    );
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "abcd", "TAGS", "a"]),
        Value::Int(0)
    );
    assert_ok(&config_set(&mut con, "rec.max-props-bytes", "10"));
    assert_err(
        &call(
            &mut con,
            &["REC.ITEM.SET", "abcd", "PROPS", r#"{"a":"123456"}"#],
        ),
        "",
    );
    assert_eq!(
        call(&mut con, &["REC.ITEM.SET", "abcd", "PROPS", r#"{"a":1}"#]),
        Value::Int(0)
    );
    assert_ok(&config_set(&mut con, "rec.max-user-features", "1"));
    assert_err(
        &call(&mut con, &["REC.USER.SET", "u", "a", "1", "b", "2"]),
        "",
    );
    assert_eq!(
        call(&mut con, &["REC.USER.SET", "u", "a", "1"]),
        Value::Int(1)
    );

    // rec.history-size bounds the history; recent never exceeds it.
    assert_ok(&config_set(&mut con, "rec.history-size", "3"));
    for i in 0..10 {
        assert_ok(&call(
            &mut con,
            &["REC.TRACK", "h", &format!("i{i}"), "view"],
        ));
    }
    let recent = ids(&field(&call(&mut con, &["REC.USER.GET", "h"]), "recent"));
    assert!(recent.len() <= 3, "{recent:?}");
    assert_eq!(recent[0], "i9");

    // rec.max-models.
    assert_ok(&config_set(&mut con, "rec.max-models", "3"));
    assert_eq!(call(&mut con, &["REC.MODEL.SET", "one"]), Value::Int(1));
    assert_err(&call(&mut con, &["REC.MODEL.SET", "two"]), "");
}

#[test]
fn structures_stay_bounded() {
    let srv = Server::start();
    let mut con = srv.connection();
    let mut cmds = Vec::new();
    for i in 0..40 {
        cmds.push(args(&[
            "REC.ITEM.SET",
            &format!("b{i}"),
            "CATEGORY",
            &format!("k{}", i % 20),
        ]));
    }
    run_all(&mut con, &cmds);
    // Defaults: `recent` is the last 20 distinct items, `categories` at most 10.
    let mut cmds = Vec::new();
    for i in 0..40 {
        cmds.push(args(&["REC.TRACK", "wide", &format!("b{i}"), "view"]));
    }
    cmds.push(args(&["REC.TRACK", "wide", "b39", "click"]));
    run_all(&mut con, &cmds);
    let v = call(&mut con, &["REC.USER.GET", "wide"]);
    let recent = ids(&field(&v, "recent"));
    let want: Vec<String> = (20..40).rev().map(|i| format!("b{i}")).collect();
    assert_eq!(recent, want, "recent: last 20 distinct, newest first");
    let cats = map_entries(&field(&v, "categories"));
    assert!(cats.len() <= 10 && !cats.is_empty(), "{cats:?}");
    let aff: Vec<f64> = cats.iter().map(|c| as_f64(&c.1)).collect();
    assert!(
        aff.windows(2).all(|w| w[0] >= w[1]),
        "strongest first: {cats:?}"
    );
    assert_eq!(as_i64(&field(&v, "events")), 41);

    // rec.neighbors bounds the neighbours kept per item.
    assert_ok(&config_set(&mut con, "rec.neighbors", "3"));
    let mut cmds = Vec::new();
    for u in 0..10 {
        for i in 0..12 {
            cmds.push(args(&[
                "REC.TRACK",
                &format!("n{u}"),
                &format!("b{i}"),
                "view",
            ]));
        }
    }
    run_all(&mut con, &cmds);
    for i in 0..12 {
        let l = ids(&call(
            &mut con,
            &["REC.SIMILAR", &format!("b{i}"), "COUNT", "100"],
        ));
        assert!(
            (1..=3).contains(&l.len()),
            "b{i} keeps {} neighbours: {l:?}",
            l.len()
        );
    }

    // rec.max-excluded bounds the purchased set.
    assert_ok(&config_set(&mut con, "rec.max-excluded", "2"));
    for i in 0..6 {
        assert_ok(&call(
            &mut con,
            &["REC.TRACK", "buyer", &format!("b{i}"), "purchase"],
        ));
    }
    let v = call(&mut con, &["REC.USER.GET", "buyer"]);
    assert!(as_i64(&field(&v, "purchased")) <= 2, "{v:?}");

    // rec.user-categories bounds the affinities.
    assert_ok(&config_set(&mut con, "rec.user-categories", "2"));
    for i in 0..10 {
        assert_ok(&call(
            &mut con,
            &["REC.TRACK", "cats", &format!("b{i}"), "view"],
        ));
    }
    let v = call(&mut con, &["REC.USER.GET", "cats"]);
    assert!(map_entries(&field(&v, "categories")).len() <= 2, "{v:?}");
}
