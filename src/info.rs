//! INFO rec: sections rec_commands, rec_events, rec_catalog, rec_memory.

use crate::persist;
use crate::stats;
use redis_module::raw;
use std::ffi::c_int;
use std::sync::atomic::Ordering;

fn section(ctx: *mut raw::RedisModuleInfoCtx, name: &str) {
    raw::add_info_section(ctx, Some(name));
}

fn int(ctx: *mut raw::RedisModuleInfoCtx, name: &str, v: i64) {
    raw::add_info_field_long_long(ctx, name, v);
}

/// Field names allow only what INFO's format allows.
fn field_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, for_crash_report: c_int) {
    let _ = std::panic::catch_unwind(|| {
        section(ctx, "commands");
        for (name, calls, errors, micros) in stats::commands() {
            int(ctx, &format!("{name}_calls"), calls as i64);
            int(ctx, &format!("{name}_errors"), errors as i64);
            int(ctx, &format!("{name}_usec"), micros as i64);
        }
        section(ctx, "cache");
        let c = &crate::cache::STATS;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as i64;
        let (l1h, l2h, miss) = (get(&c.l1_hits), get(&c.l2_hits), get(&c.misses));
        int(ctx, "l1_hits", l1h);
        int(ctx, "l2_hits", l2h);
        int(ctx, "misses", miss);
        let total = l1h + l2h + miss;
        let rate = if total > 0 {
            (l1h + l2h) as f64 / total as f64
        } else {
            0.0
        };
        raw::add_info_field_double(ctx, "hit_rate", rate);
        int(ctx, "early_refreshes", get(&c.early_refreshes));
        int(ctx, "fills", get(&c.fills));
        int(ctx, "invalidations_user", get(&c.inval_user));
        int(ctx, "invalidations_event", get(&c.inval_event));
        int(ctx, "invalidations_item", get(&c.inval_item));
        int(ctx, "invalidations_all", get(&c.inval_all));
        int(ctx, "stale_item", get(&c.stale_item));
        int(ctx, "stale_model", get(&c.stale_model));
        int(ctx, "stale_epoch", get(&c.stale_epoch));
        int(
            ctx,
            "l1_dropped_by_keyspace",
            get(&c.l1_dropped_by_keyspace),
        );
        let (lists, bytes, users) = crate::cache::l1_size();
        int(ctx, "l1_entries", lists as i64);
        int(ctx, "l1_users", users as i64);
        int(ctx, "l1_bytes", bytes as i64);
        int(ctx, "l2_keys", c.l2_keys.load(Ordering::Relaxed).max(0));
        section(ctx, "events");
        let events = stats::events();
        int(ctx, "events_total", events.iter().map(|e| e.1 as i64).sum());
        for (action, n) in events {
            int(ctx, &format!("events_{}", field_name(&action)), n as i64);
        }
        // In a crash report the engine lock may be held by the crashing command: don't wait.
        let engine = if for_crash_report != 0 {
            persist::try_engine()
        } else {
            Some(persist::engine())
        };
        let user_bytes = stats::USER_BYTES.load(Ordering::Relaxed);
        let user_keys = stats::USER_KEYS.load(Ordering::Relaxed);
        if let Some(e) = engine {
            section(ctx, "catalog");
            int(ctx, "items", e.catalog.len() as i64);
            int(ctx, "available_items", e.catalog.available_count() as i64);
            int(ctx, "categories", e.catalog.categories.len() as i64);
            int(ctx, "tags", e.catalog.tags.len() as i64);
            int(ctx, "models", e.models.len() as i64);
            int(ctx, "users_seen", e.users_seen as i64);
            int(ctx, "user_keys", user_keys);
            int(ctx, "popularity_clock_ms", e.pop.clock_ms);
            let m = e.mem_report();
            section(ctx, "memory");
            int(ctx, "catalog_bytes", m.catalog as i64);
            int(ctx, "cooccurrence_bytes", m.cooccurrence as i64);
            int(ctx, "popularity_bytes", m.popularity as i64);
            int(ctx, "models_bytes", m.models as i64);
            int(ctx, "users_bytes", user_bytes);
            int(
                ctx,
                "total_bytes",
                (m.catalog + m.cooccurrence + m.popularity + m.models) as i64 + user_bytes,
            );
        }
    });
}
