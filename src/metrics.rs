//! One snapshot of every counter and gauge, rendered two ways: INFO rec sections and the
//! Prometheus text exposition format (REC.METRICS, and the /metrics endpoint).

use crate::cache;
use crate::config;
use crate::engine::{Engine, MemReport};
use crate::histogram;
use crate::quality::{self, ModelReport};
use crate::stats;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

pub struct CommandSnap {
    pub name: &'static str,
    pub calls: u64,
    pub errors: u64,
    pub usec: u64,
    pub latency: histogram::Snapshot,
}

/// Everything INFO rec and REC.METRICS report, read at one moment on the main thread.
pub struct Snapshot {
    pub commands: Vec<CommandSnap>,
    pub cache_counters: Vec<(&'static str, u64)>,
    pub invalidations: Vec<(&'static str, u64)>,
    pub stale: Vec<(&'static str, u64)>,
    pub l1_entries: usize,
    pub l1_users: usize,
    pub l1_bytes: usize,
    pub l2_keys: i64,
    pub events: Vec<(String, u64)>,
    pub catalog: Vec<(&'static str, i64)>,
    pub models: Vec<(String, ModelReport)>,
    pub covered_items: usize,
    pub coverage: f64,
    pub staleness_s: f64,
    pub memory: Vec<(&'static str, i64)>,
    pub experiments: Vec<ExperimentSnap>,
}

pub struct ExperimentSnap {
    pub name: String,
    pub running: bool,
    /// (arm, users, impressions, clicks, conversions)
    pub arms: Vec<(String, u64, u64, u64, u64)>,
}

/// The engine's memory estimate walks the catalog, so INFO, REC.METRICS and the once-a-second
/// exporter share one estimate refreshed at most every few seconds.
fn mem_report(e: &Engine, now_ms: i64) -> MemReport {
    const MAX_AGE_MS: i64 = 5_000;
    static CACHED: Mutex<Option<(i64, usize, u64, MemReport)>> = Mutex::new(None);
    let mut c = CACHED.lock().unwrap_or_else(|x| x.into_inner());
    // Refreshed also whenever the catalog or models changed (size, or the change stamp).
    let (len, stamp) = (e.catalog.len(), e.stamp);
    match *c {
        Some((at, l, s, m))
            if l == len && s == stamp && (0..MAX_AGE_MS).contains(&(now_ms - at)) =>
        {
            m
        }
        _ => {
            let m = e.mem_report();
            *c = Some((now_ms, len, stamp, m));
            m
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Snapshot {
    pub fn collect(e: &Engine, now_ms: i64) -> Snapshot {
        let commands = stats::commands()
            .into_iter()
            .enumerate()
            .map(|(i, (name, calls, errors, usec))| CommandSnap {
                name,
                calls,
                errors,
                usec,
                latency: stats::latency(i)
                    .unwrap_or_else(|| histogram::Histogram::new().snapshot()),
            })
            .collect();
        let c = &cache::STATS;
        let (l1_entries, l1_bytes, l1_users) = cache::l1_size();
        let window_ms = config::get(&config::QUALITY_WINDOW) as i64 * 1000;
        let q = quality::quality();
        let covered_items = q.covered(now_ms, window_ms, |id| {
            e.catalog.get_by_id(id).is_some_and(|it| it.available)
        });
        let models = q.reports(now_ms, window_ms, e.catalog.categories.len());
        let quality_bytes = q.mem_bytes();
        drop(q);
        let available = e.catalog.available_count();
        let m = mem_report(e, now_ms);
        let user_bytes = stats::USER_BYTES.load(Ordering::Relaxed);
        let engine_bytes =
            (m.catalog + m.cooccurrence + m.popularity + m.models + e.experiments.mem_bytes())
                as i64;
        let experiments = e
            .experiments
            .iter()
            .map(|x| ExperimentSnap {
                name: x.name.clone(),
                running: x.is_running(),
                arms: x
                    .arms
                    .iter()
                    .map(|a| {
                        (
                            a.name.clone(),
                            a.users,
                            a.impressions,
                            a.clicks,
                            a.conversions,
                        )
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            experiments,
            commands,
            cache_counters: vec![
                ("l1_hits", load(&c.l1_hits)),
                ("l2_hits", load(&c.l2_hits)),
                ("misses", load(&c.misses)),
                ("early_refreshes", load(&c.early_refreshes)),
                ("fills", load(&c.fills)),
                ("l1_dropped_by_keyspace", load(&c.l1_dropped_by_keyspace)),
            ],
            invalidations: vec![
                ("user", load(&c.inval_user)),
                ("event", load(&c.inval_event)),
                ("item", load(&c.inval_item)),
                ("all", load(&c.inval_all)),
            ],
            stale: vec![
                ("item", load(&c.stale_item)),
                ("model", load(&c.stale_model)),
                ("epoch", load(&c.stale_epoch)),
            ],
            l1_entries,
            l1_users,
            l1_bytes,
            l2_keys: c.l2_keys.load(Ordering::Relaxed).max(0),
            events: stats::events(),
            catalog: vec![
                ("items", e.catalog.len() as i64),
                ("available_items", available as i64),
                ("categories", e.catalog.categories.len() as i64),
                ("tags", e.catalog.tags.len() as i64),
                ("models", e.models.len() as i64),
                ("users_seen", e.users_seen as i64),
                ("user_keys", stats::USER_KEYS.load(Ordering::Relaxed)),
            ],
            models,
            covered_items,
            coverage: if available > 0 {
                (covered_items as f64 / available as f64).min(1.0)
            } else {
                0.0
            },
            staleness_s: ((now_ms - stats::LAST_MODEL_CHANGE_MS.load(Ordering::Relaxed)).max(0))
                as f64
                / 1000.0,
            memory: vec![
                ("catalog", m.catalog as i64),
                ("cooccurrence", m.cooccurrence as i64),
                ("popularity", m.popularity as i64),
                ("models", m.models as i64),
                ("experiments", e.experiments.mem_bytes() as i64),
                ("users", user_bytes),
                ("l1_cache", l1_bytes as i64),
                ("quality", quality_bytes as i64),
                (
                    "total",
                    engine_bytes + user_bytes + (l1_bytes + quality_bytes) as i64,
                ),
            ],
        }
    }

    pub fn hits(&self) -> (u64, u64, u64) {
        let get = |k: &str| {
            self.cache_counters
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(0, |x| x.1)
        };
        (get("l1_hits"), get("l2_hits"), get("misses"))
    }

    pub fn hit_rate(&self) -> f64 {
        let (a, b, m) = self.hits();
        let t = a + b + m;
        if t > 0 {
            (a + b) as f64 / t as f64
        } else {
            0.0
        }
    }

    /// Totals across models.
    pub fn totals(&self) -> ModelReport {
        let mut t = ModelReport::default();
        let mut div = 0.0;
        for (_, r) in &self.models {
            t.impressions += r.impressions;
            t.clicks += r.clicks;
            t.conversions += r.conversions;
            t.lists += r.lists;
            div += r.diversity * r.lists as f64;
        }
        if t.impressions > 0 {
            t.ctr = t.clicks as f64 / t.impressions as f64;
            t.conversion_rate = t.conversions as f64 / t.impressions as f64;
        }
        if t.lists > 0 {
            t.diversity = div / t.lists as f64;
        }
        t
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut p = Prom::default();
        p.family("rec_commands_total", "counter", "Calls per command.");
        for c in &self.commands {
            p.sample("rec_commands_total", &[("command", c.name)], c.calls as f64);
        }
        p.family(
            "rec_command_errors_total",
            "counter",
            "Error replies per command.",
        );
        for c in &self.commands {
            p.sample(
                "rec_command_errors_total",
                &[("command", c.name)],
                c.errors as f64,
            );
        }
        p.family(
            "rec_command_duration_seconds",
            "histogram",
            "Time spent executing each command.",
        );
        for c in &self.commands {
            for (le, n) in c.latency.prometheus_buckets() {
                let le = le.map_or_else(|| "+Inf".to_string(), fmt_f64);
                p.sample(
                    "rec_command_duration_seconds_bucket",
                    &[("command", c.name), ("le", &le)],
                    n as f64,
                );
            }
            let lbl = [("command", c.name)];
            p.sample(
                "rec_command_duration_seconds_sum",
                &lbl,
                c.latency.sum_ns as f64 / 1e9,
            );
            p.sample(
                "rec_command_duration_seconds_count",
                &lbl,
                c.latency.total() as f64,
            );
        }
        let (l1, l2, miss) = self.hits();
        p.family("rec_cache_hits_total", "counter", "Cache hits per tier.");
        p.sample("rec_cache_hits_total", &[("tier", "l1")], l1 as f64);
        p.sample("rec_cache_hits_total", &[("tier", "l2")], l2 as f64);
        p.one(
            "rec_cache_misses_total",
            "counter",
            "Cache misses (lists computed).",
            miss as f64,
        );
        p.one(
            "rec_cache_hit_ratio",
            "gauge",
            "Share of REC.GET served from cache.",
            self.hit_rate(),
        );
        let early = self
            .cache_counters
            .iter()
            .find(|x| x.0 == "early_refreshes")
            .map_or(0, |x| x.1);
        p.one(
            "rec_cache_early_refreshes_total",
            "counter",
            "Hits recomputed early by XFetch.",
            early as f64,
        );
        p.family(
            "rec_cache_invalidations_total",
            "counter",
            "Cache invalidations by cause.",
        );
        for (cause, n) in &self.invalidations {
            p.sample(
                "rec_cache_invalidations_total",
                &[("cause", cause)],
                *n as f64,
            );
        }
        p.family(
            "rec_cache_stale_total",
            "counter",
            "Cached lists refused as stale, by cause.",
        );
        for (cause, n) in &self.stale {
            p.sample("rec_cache_stale_total", &[("cause", cause)], *n as f64);
        }
        p.one(
            "rec_cache_l1_entries",
            "gauge",
            "Lists held in L1.",
            self.l1_entries as f64,
        );
        p.one(
            "rec_cache_l2_keys",
            "gauge",
            "L2 cache keys.",
            self.l2_keys as f64,
        );
        p.family("rec_events_total", "counter", "Events tracked per action.");
        for (a, n) in &self.events {
            p.sample("rec_events_total", &[("action", a)], *n as f64);
        }
        type Field = fn(&ModelReport) -> f64;
        let per_model: [(&str, &str, &str, Field); 7] = [
            (
                "rec_impressions_total",
                "counter",
                "Items returned by REC.GET.",
                |r| r.impressions as f64,
            ),
            (
                "rec_clicks_total",
                "counter",
                "Clicks attributed to recommendations.",
                |r| r.clicks as f64,
            ),
            (
                "rec_conversions_total",
                "counter",
                "Conversions attributed to recommendations.",
                |r| r.conversions as f64,
            ),
            ("rec_ctr", "gauge", "Clicks per impression.", |r| r.ctr),
            (
                "rec_conversion_rate",
                "gauge",
                "Conversions per impression.",
                |r| r.conversion_rate,
            ),
            (
                "rec_diversity",
                "gauge",
                "Mean intra-list diversity over the quality window.",
                |r| r.diversity,
            ),
            (
                "rec_category_entropy",
                "gauge",
                "Normalized entropy of recommended categories.",
                |r| r.entropy,
            ),
        ];
        for (name, kind, help, f) in per_model {
            p.family(name, kind, help);
            for (model, r) in &self.models {
                p.sample(name, &[("model", model)], f(r));
            }
        }
        p.one(
            "rec_catalog_coverage",
            "gauge",
            "Distinct available items recommended in the quality window / available items.",
            self.coverage,
        );
        p.one(
            "rec_model_staleness_seconds",
            "gauge",
            "Seconds since the catalog or a model last changed.",
            self.staleness_s,
        );
        for (name, v) in &self.catalog {
            let metric = format!("rec_catalog_{name}");
            p.one(&metric, "gauge", "Catalog and user counts.", *v as f64);
        }
        p.one(
            "rec_experiments",
            "gauge",
            "Experiments defined.",
            self.experiments.len() as f64,
        );
        type ArmField = fn(&(String, u64, u64, u64, u64)) -> u64;
        let per_arm: [(&str, &str, ArmField); 4] = [
            (
                "rec_experiment_users_total",
                "Users exposed per arm.",
                |a| a.1,
            ),
            (
                "rec_experiment_impressions_total",
                "Lists served per arm.",
                |a| a.2,
            ),
            (
                "rec_experiment_clicks_total",
                "Clicks attributed per arm.",
                |a| a.3,
            ),
            (
                "rec_experiment_conversions_total",
                "Conversions attributed per arm.",
                |a| a.4,
            ),
        ];
        for (name, help, f) in per_arm {
            p.family(name, "counter", help);
            for x in &self.experiments {
                for a in &x.arms {
                    p.sample(name, &[("experiment", &x.name), ("arm", &a.0)], f(a) as f64);
                }
            }
        }
        p.family(
            "rec_memory_bytes",
            "gauge",
            "Estimated memory per structure.",
        );
        for (s, v) in &self.memory {
            p.sample("rec_memory_bytes", &[("structure", s)], *v as f64);
        }
        p.out
    }
}

/// Prometheus floats: integers without a fraction, others in Rust's shortest round-trip form.
fn fmt_f64(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{v}")
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[derive(Default)]
struct Prom {
    out: String,
}

impl Prom {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(val));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", fmt_f64(v));
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn floats() {
        assert_eq!(fmt_f64(1.0), "1");
        assert_eq!(fmt_f64(0.000001), "0.000001");
        assert_eq!(fmt_f64(f64::INFINITY), "+Inf");
    }
}
