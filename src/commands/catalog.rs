//! REC.ITEM.SET | GET | DEL

use super::{err, map, now_ms, once, show, unknown_option, Args, CmdError, CmdResult, Reply};
use crate::config;
use crate::engine::catalog::ItemUpdate;
use crate::persist::engine;
use redis_module::Context;

const ITEM_SET_OPTIONS: &str = "CATEGORY, TAGS, CREATED, AVAILABLE or PROPS";

fn parse_item_update(a: &mut Args) -> Result<ItemUpdate, CmdError> {
    let mut up = ItemUpdate::default();
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "CATEGORY" => {
                once(&up.category, "CATEGORY")?;
                let c = a.value_of("CATEGORY")?;
                if !c.is_empty() {
                    super::check_id("category", c)?;
                }
                up.category = Some((!c.is_empty()).then(|| c.to_vec()));
            }
            "TAGS" => {
                once(&up.tags, "TAGS")?;
                let t = a.value_of("TAGS")?;
                let tags: Vec<Vec<u8>> = if t.is_empty() {
                    Vec::new()
                } else {
                    t.split(|&b| b == b',').map(<[u8]>::to_vec).collect()
                };
                let max = config::get(&config::MAX_TAGS);
                if tags.len() > max {
                    return err(format!(
                        "too many tags ({}) — expected at most {max} (rec.max-tags)",
                        tags.len()
                    ));
                }
                for tag in &tags {
                    super::check_id("tag", tag)?;
                }
                up.tags = Some(tags);
            }
            "CREATED" => {
                once(&up.created, "CREATED")?;
                up.created = Some(a.int("CREATED", 0, 253_402_300_799_999)?);
            }
            "AVAILABLE" => {
                once(&up.available, "AVAILABLE")?;
                up.available = Some(match a.value_of("AVAILABLE")? {
                    b"1" => true,
                    b"0" => false,
                    v => return err(format!("bad AVAILABLE '{}' — expected 0 or 1", show(v))),
                });
            }
            "PROPS" => {
                once(&up.props, "PROPS")?;
                let p = a.value_of("PROPS")?;
                let max = config::get(&config::MAX_PROPS_BYTES);
                if p.len() > max {
                    return err(format!(
                        "PROPS too large ({} bytes) — expected at most {max} (rec.max-props-bytes)",
                        p.len()
                    ));
                }
                match serde_json::from_slice::<serde_json::Value>(p) {
                    Ok(serde_json::Value::Object(_)) => {}
                    _ => return err("bad PROPS — expected a JSON object"),
                }
                up.props = Some(p.to_vec());
            }
            _ => return Err(unknown_option(&kw, ITEM_SET_OPTIONS)),
        }
    }
    Ok(up)
}

pub fn item_set(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let id = a.id("item")?;
    let mut up = parse_item_update(a)?;
    let mut e = engine();
    let is_new = e.catalog.lookup(id).is_none();
    // A new item without CREATED gets the current time, and that time is what replicates.
    let stamped = is_new && up.created.is_none();
    if stamped {
        up.created = Some(now_ms());
    }
    let created_at = up.created;
    let created = e
        .item_set(id, up, &config::settings())
        .map_err(|x| CmdError(x.to_string()))?;
    drop(e);
    crate::stats::mark_model_change(now_ms());
    match (stamped, created_at) {
        (true, Some(ts)) => {
            let mut args: Vec<Vec<u8>> = a.all_after_name();
            args.push(b"CREATED".to_vec());
            args.push(ts.to_string().into_bytes());
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            ctx.replicate("REC.ITEM.SET", &refs[..]);
        }
        _ => ctx.replicate_verbatim(),
    }
    Ok(Reply::Int(i64::from(created)))
}

pub fn item_get(_ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let id = a.id("item")?;
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    let e = engine();
    let s = config::settings();
    let Some(it) = e.catalog.get_by_id(id) else {
        return Ok(Reply::Null);
    };
    let category = match it.category {
        Some(c) => Reply::Bulk(e.catalog.category_name(c).to_vec()),
        None => Reply::Null,
    };
    let tags = it
        .tags
        .iter()
        .map(|&t| Reply::Bulk(e.catalog.tags.name(t).to_vec()))
        .collect();
    Ok(map(vec![
        ("id", Reply::Bulk(it.id.to_vec())),
        ("category", category),
        ("tags", Reply::Array(tags)),
        ("created", Reply::Int(it.created)),
        ("available", Reply::Int(i64::from(it.available))),
        (
            "props",
            it.props
                .as_ref()
                .map_or(Reply::Null, |p| Reply::Bulk(p.to_vec())),
        ),
        ("popularity", Reply::Double(e.popularity_of(it.pop, &s))),
        ("events", Reply::Int(it.events as i64)),
    ]))
}

pub fn item_del(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let id = a.id("item")?;
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    let removed = engine().item_del(id);
    if removed {
        crate::stats::mark_model_change(super::now_ms());
        ctx.replicate_verbatim();
    }
    Ok(Reply::Int(i64::from(removed)))
}
