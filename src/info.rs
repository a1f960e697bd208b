//! INFO rec: sections rec_commands, rec_latency, rec_cache, rec_quality, rec_events,
//! rec_catalog and rec_memory, from one metrics snapshot (field names documented in
//! docs/monitoring.md).

use crate::metrics::Snapshot;
use crate::persist;
use redis_module::raw;
use std::ffi::c_int;

type Ctx = *mut raw::RedisModuleInfoCtx;

fn section(ctx: Ctx, name: &str) {
    raw::add_info_section(ctx, Some(name));
}

fn int(ctx: Ctx, name: &str, v: i64) {
    raw::add_info_field_long_long(ctx, name, v);
}

fn float(ctx: Ctx, name: &str, v: f64) {
    raw::add_info_field_double(ctx, name, v);
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

pub extern "C" fn info(ctx: Ctx, for_crash_report: c_int) {
    let _ = std::panic::catch_unwind(|| {
        // In a crash report the engine lock may be held by the crashing command: don't wait.
        let engine = if for_crash_report != 0 {
            persist::try_engine()
        } else {
            Some(persist::engine())
        };
        let Some(e) = engine else {
            return;
        };
        let s = Snapshot::collect(&e, crate::commands::now_ms());
        drop(e);
        write(ctx, &s);
    });
}

fn write(ctx: Ctx, s: &Snapshot) {
    section(ctx, "commands");
    for c in &s.commands {
        int(ctx, &format!("{}_calls", c.name), c.calls as i64);
        int(ctx, &format!("{}_errors", c.name), c.errors as i64);
        int(ctx, &format!("{}_usec", c.name), c.usec as i64);
    }
    section(ctx, "latency");
    for c in &s.commands {
        for (q, label) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
            float(
                ctx,
                &format!("{}_{label}_usec", c.name),
                c.latency.quantile_ns(q) / 1000.0,
            );
        }
    }
    section(ctx, "cache");
    for (name, v) in &s.cache_counters {
        int(ctx, name, *v as i64);
    }
    float(ctx, "hit_rate", s.hit_rate());
    for (cause, v) in &s.invalidations {
        int(ctx, &format!("invalidations_{cause}"), *v as i64);
    }
    for (cause, v) in &s.stale {
        int(ctx, &format!("stale_{cause}"), *v as i64);
    }
    int(ctx, "l1_entries", s.l1_entries as i64);
    int(ctx, "l1_users", s.l1_users as i64);
    int(ctx, "l1_bytes", s.l1_bytes as i64);
    int(ctx, "l2_keys", s.l2_keys);
    section(ctx, "quality");
    let t = s.totals();
    int(ctx, "impressions", t.impressions as i64);
    int(ctx, "clicks", t.clicks as i64);
    int(ctx, "conversions", t.conversions as i64);
    float(ctx, "ctr", t.ctr);
    float(ctx, "conversion_rate", t.conversion_rate);
    float(ctx, "coverage", s.coverage);
    int(ctx, "covered_items", s.covered_items as i64);
    float(ctx, "diversity", t.diversity);
    float(ctx, "model_staleness_seconds", s.staleness_s);
    for (model, r) in &s.models {
        let m = field_name(model);
        int(ctx, &format!("model_{m}_impressions"), r.impressions as i64);
        int(ctx, &format!("model_{m}_clicks"), r.clicks as i64);
        int(ctx, &format!("model_{m}_conversions"), r.conversions as i64);
        float(ctx, &format!("model_{m}_ctr"), r.ctr);
        float(
            ctx,
            &format!("model_{m}_conversion_rate"),
            r.conversion_rate,
        );
        float(ctx, &format!("model_{m}_diversity"), r.diversity);
        float(ctx, &format!("model_{m}_entropy"), r.entropy);
    }
    section(ctx, "experiments");
    int(ctx, "experiments", s.experiments.len() as i64);
    int(
        ctx,
        "experiments_running",
        s.experiments.iter().filter(|x| x.running).count() as i64,
    );
    for x in &s.experiments {
        for (arm, users, imp, clicks, conv) in &x.arms {
            let stem = format!("exp_{}_{}", field_name(&x.name), field_name(arm));
            int(ctx, &format!("{stem}_users"), *users as i64);
            int(ctx, &format!("{stem}_impressions"), *imp as i64);
            int(ctx, &format!("{stem}_clicks"), *clicks as i64);
            int(ctx, &format!("{stem}_conversions"), *conv as i64);
        }
    }
    section(ctx, "events");
    int(
        ctx,
        "events_total",
        s.events.iter().map(|e| e.1 as i64).sum(),
    );
    for (action, n) in &s.events {
        int(ctx, &format!("events_{}", field_name(action)), *n as i64);
    }
    section(ctx, "catalog");
    for (name, v) in &s.catalog {
        int(ctx, name, *v);
    }
    section(ctx, "memory");
    for (name, v) in &s.memory {
        int(ctx, &format!("{name}_bytes"), *v);
    }
}
