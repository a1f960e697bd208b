//! REC.INVALIDATE <user> | ITEM <item> | ALL

use super::{check_id, Args, CmdResult, Reply};
use crate::cache;
use crate::persist::engine;
use redis_module::{Context, RedisString};
use std::sync::atomic::Ordering;

/// Which form a call takes: only `REC.INVALIDATE <user>` names a key (for cluster routing).
pub fn names_user(args: &[RedisString]) -> bool {
    match args {
        [_, first] => !first.as_slice().eq_ignore_ascii_case(b"ALL"),
        [_, first, _] => !first.as_slice().eq_ignore_ascii_case(b"ITEM"),
        _ => false,
    }
}

pub fn invalidate(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let first = a.arg()?;
    let dropped = if first.eq_ignore_ascii_case(b"ALL") && a.is_done() {
        engine().invalidate_all();
        let l1 = cache::l1_clear();
        let l2 = cache::STATS.l2_keys.load(Ordering::Relaxed).max(0) as usize;
        cache::bump(&cache::STATS.inval_all);
        l1.max(l2)
    } else if first.eq_ignore_ascii_case(b"ITEM") && a.remaining() == 1 {
        let item = a.id("item")?;
        if !engine().invalidate_item(item) {
            return Ok(Reply::Int(0));
        }
        cache::bump(&cache::STATS.inval_item);
        cache::l1_drop_item(item)
    } else if a.is_done() {
        check_id("user", first)?;
        let key = cache::cache_key(first);
        cache::bump(&cache::STATS.inval_user);
        cache::drop_user(ctx, &key)
    } else {
        return Err(super::arity_error(&a.name()));
    };
    // Deterministic, so replicas and the AOF run the same invalidation on their own caches.
    ctx.replicate_verbatim();
    Ok(Reply::Int(dropped as i64))
}
