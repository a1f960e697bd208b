//! Node-local counters for INFO: calls, errors and time per command, events per action.
//! Like Redis's own INFO stats they start at zero with the process and are not replicated.

use crate::histogram::{Histogram, Snapshot};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

macro_rules! commands {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// Every command, for counting.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Cmd { $($variant),* }
        /// INFO field stems, in `Cmd` order.
        pub const CMD_NAMES: &[&str] = &[$($name),*];
    };
}

commands! {
    ItemSet => "item_set",
    ItemGet => "item_get",
    ItemDel => "item_del",
    Track => "track",
    Get => "get",
    GetRo => "get_ro",
    Similar => "similar",
    Popular => "popular",
    UserGet => "user_get",
    UserSet => "user_set",
    UserDel => "user_del",
    ModelSet => "model_set",
    ModelGet => "model_get",
    ModelList => "model_list",
    ModelDel => "model_del",
    RestoreUser => "restore_user",
    Invalidate => "invalidate",
    Metrics => "metrics",
    ExperimentCreate => "experiment_create",
    ExperimentGet => "experiment_get",
    ExperimentList => "experiment_list",
    ExperimentStop => "experiment_stop",
    ExperimentDel => "experiment_del",
    ExperimentStats => "experiment_stats",
    Assign => "assign",
    SampleSize => "samplesize",
    Expose => "expose",
}

const N: usize = CMD_NAMES.len();

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
static CALLS: [AtomicU64; N] = [ZERO; N];
static ERRORS: [AtomicU64; N] = [ZERO; N];
static MICROS: [AtomicU64; N] = [ZERO; N];
#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Histogram = Histogram::new();
static LATENCY: [Histogram; N] = [EMPTY; N];

/// rec.metrics-enabled: when off, calls are not timed or counted.
pub static METRICS_ENABLED: AtomicBool = AtomicBool::new(true);

/// When the catalog or a model last changed on this node (Unix ms).
pub static LAST_MODEL_CHANGE_MS: AtomicI64 = AtomicI64::new(0);

pub fn enabled() -> bool {
    METRICS_ENABLED.load(Ordering::Relaxed)
}

pub fn mark_model_change(now_ms: i64) {
    LAST_MODEL_CHANGE_MS.store(now_ms, Ordering::Relaxed);
}

pub fn latency(cmd_index: usize) -> Option<Snapshot> {
    LATENCY.get(cmd_index).map(Histogram::snapshot)
}

/// REC.METRICS RESET: zero every counter (gauges such as sizes are not counters).
pub fn reset() {
    for i in 0..N {
        CALLS[i].store(0, Ordering::Relaxed);
        ERRORS[i].store(0, Ordering::Relaxed);
        MICROS[i].store(0, Ordering::Relaxed);
        LATENCY[i].reset();
    }
    EVENTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Bytes held by user-state keys (adjusted on every change, load and free).
pub static USER_BYTES: AtomicI64 = AtomicI64::new(0);
/// User-state keys currently in memory.
pub static USER_KEYS: AtomicI64 = AtomicI64::new(0);

static EVENTS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

pub fn record_call(cmd: Cmd, ok: bool, took: Duration) {
    let i = cmd as usize;
    CALLS[i].fetch_add(1, Ordering::Relaxed);
    if !ok {
        ERRORS[i].fetch_add(1, Ordering::Relaxed);
    }
    MICROS[i].fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    LATENCY[i].record(took.as_nanos() as u64);
}

pub fn record_event(action: &str) {
    let mut ev = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
    match ev.iter_mut().find(|(a, _)| a == action) {
        Some(e) => e.1 += 1,
        None => ev.push((action.to_string(), 1)),
    }
}

/// (name, calls, errors, microseconds) per command.
pub fn commands() -> Vec<(&'static str, u64, u64, u64)> {
    (0..N)
        .map(|i| {
            (
                CMD_NAMES[i],
                CALLS[i].load(Ordering::Relaxed),
                ERRORS[i].load(Ordering::Relaxed),
                MICROS[i].load(Ordering::Relaxed),
            )
        })
        .collect()
}

pub fn events() -> Vec<(String, u64)> {
    EVENTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

pub fn add_user_bytes(delta: i64) {
    USER_BYTES.fetch_add(delta, Ordering::Relaxed);
}
