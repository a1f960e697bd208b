//! `rec.*` parameters: readable and settable with CONFIG GET/SET, and from redis.conf.

use crate::engine::actions::{ActionTable, DEFAULT_ACTION_WEIGHTS};
use crate::engine::Settings;
use redis_module::configuration::{ConfigurationContext, ConfigurationValue};
use redis_module::{raw, RedisError, RedisString};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

pub static HISTORY_SIZE: AtomicI64 = AtomicI64::new(100);
pub static COOC_WINDOW: AtomicI64 = AtomicI64::new(20);
pub static NEIGHBORS: AtomicI64 = AtomicI64::new(100);
pub static POPULARITY_HALF_LIFE: AtomicI64 = AtomicI64::new(86_400);
pub static AFFINITY_HALF_LIFE: AtomicI64 = AtomicI64::new(604_800);
pub static MAX_COUNT: AtomicI64 = AtomicI64::new(100);
pub static MAX_PER_CATEGORY: AtomicI64 = AtomicI64::new(3);
pub static MAX_ID_LENGTH: AtomicI64 = AtomicI64::new(256);
pub static MAX_ITEMS: AtomicI64 = AtomicI64::new(1_000_000);
pub static MAX_EXCLUDED: AtomicI64 = AtomicI64::new(500);
pub static USER_CATEGORIES: AtomicI64 = AtomicI64::new(32);
pub static MAX_TAGS: AtomicI64 = AtomicI64::new(32);
pub static MAX_PROPS_BYTES: AtomicI64 = AtomicI64::new(4096);
pub static MAX_USER_FEATURES: AtomicI64 = AtomicI64::new(64);
pub static MAX_MODELS: AtomicI64 = AtomicI64::new(64);
pub static MAX_SCAN: AtomicI64 = AtomicI64::new(5000);
pub static CACHE_TTL: AtomicI64 = AtomicI64::new(300);
pub static L1_SIZE: AtomicI64 = AtomicI64::new(10_000);
pub static USER_TTL: AtomicI64 = AtomicI64::new(0);
pub static QUALITY_WINDOW: AtomicI64 = AtomicI64::new(3600);
pub static METRICS_PORT: AtomicI64 = AtomicI64::new(0);
pub static MAX_EXPERIMENTS: AtomicI64 = AtomicI64::new(100);
pub static ATTRIBUTION_WINDOW: AtomicI64 = AtomicI64::new(1800);
pub static SERVED_LISTS: AtomicI64 = AtomicI64::new(10);

/// (name, variable, default, min, max) of every integer parameter, registered in lib.rs.
pub type IntParam = (&'static str, &'static AtomicI64, i64, i64, i64);
pub const INT_PARAMS: [IntParam; 24] = [
    ("history-size", &HISTORY_SIZE, 100, 1, 10_000),
    ("cooc-window", &COOC_WINDOW, 20, 1, 200),
    ("neighbors", &NEIGHBORS, 100, 1, 1000),
    (
        "popularity-half-life",
        &POPULARITY_HALF_LIFE,
        86_400,
        1,
        31_536_000,
    ),
    (
        "affinity-half-life",
        &AFFINITY_HALF_LIFE,
        604_800,
        1,
        31_536_000,
    ),
    ("max-count", &MAX_COUNT, 100, 1, 1000),
    ("max-per-category", &MAX_PER_CATEGORY, 3, 0, 1000),
    ("max-id-length", &MAX_ID_LENGTH, 256, 1, 65_536),
    ("max-items", &MAX_ITEMS, 1_000_000, 1, 100_000_000),
    ("max-excluded", &MAX_EXCLUDED, 500, 0, 100_000),
    ("user-categories", &USER_CATEGORIES, 32, 1, 1000),
    ("max-tags", &MAX_TAGS, 32, 0, 1000),
    ("max-props-bytes", &MAX_PROPS_BYTES, 4096, 0, 1_048_576),
    ("max-user-features", &MAX_USER_FEATURES, 64, 0, 10_000),
    ("max-models", &MAX_MODELS, 64, 2, 10_000),
    ("max-scan", &MAX_SCAN, 5000, 10, 1_000_000),
    ("cache-ttl", &CACHE_TTL, 300, 0, 2_592_000),
    ("l1-size", &L1_SIZE, 10_000, 0, 10_000_000),
    ("user-ttl", &USER_TTL, 0, 0, 315_360_000),
    ("quality-window", &QUALITY_WINDOW, 3600, 60, 604_800),
    ("metrics-port", &METRICS_PORT, 0, 0, 65_535),
    ("max-experiments", &MAX_EXPERIMENTS, 100, 1, 1000),
    (
        "attribution-window",
        &ATTRIBUTION_WINDOW,
        1800,
        0,
        2_592_000,
    ),
    ("served-lists", &SERVED_LISTS, 10, 0, 1000),
];

pub fn get(v: &AtomicI64) -> usize {
    usize::try_from(v.load(Ordering::Relaxed)).unwrap_or(0)
}

/// The engine's view of the current configuration.
pub fn settings() -> Settings {
    Settings {
        history_size: get(&HISTORY_SIZE),
        cooc_window: get(&COOC_WINDOW),
        neighbors: get(&NEIGHBORS),
        popularity_half_life_ms: get(&POPULARITY_HALF_LIFE) as f64 * 1000.0,
        affinity_half_life_ms: get(&AFFINITY_HALF_LIFE) as f64 * 1000.0,
        max_items: get(&MAX_ITEMS),
        max_excluded: get(&MAX_EXCLUDED),
        user_categories: get(&USER_CATEGORIES),
        max_scan: get(&MAX_SCAN),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A string parameter validated on SET: `parse` turns the text into the value commands use.
pub struct StringParam<T: Send + Sync + 'static> {
    text: Mutex<String>,
    value: Mutex<Arc<T>>,
    parse: fn(&str) -> Result<T, String>,
    /// The last string handed to Redis by `get`, freed on the next call (Redis copies it at once).
    last: Mutex<usize>,
}

impl<T: Send + Sync + 'static> StringParam<T> {
    pub fn value(&self) -> Arc<T> {
        lock(&self.value).clone()
    }
}

impl<T: Send + Sync + 'static> ConfigurationValue<RedisString> for StringParam<T> {
    fn get(&self, _ctx: &ConfigurationContext) -> RedisString {
        let s = RedisString::create(None, lock(&self.text).as_str());
        let p = s.inner;
        std::mem::forget(s);
        let mut last = lock(&self.last);
        if *last != 0 {
            // Safety: the pointer came from a previous call and Redis copied it already.
            unsafe {
                if let Some(free) = raw::RedisModule_FreeString {
                    free(std::ptr::null_mut(), *last as *mut raw::RedisModuleString);
                }
            }
        }
        *last = p as usize;
        RedisString::from_redis_module_string(std::ptr::null_mut(), p)
    }

    fn set(&self, _ctx: &ConfigurationContext, val: RedisString) -> Result<(), RedisError> {
        let text = std::str::from_utf8(val.as_slice())
            .map_err(|_| RedisError::Str("value is not UTF-8 — expected text"))?
            .to_string();
        let parsed = (self.parse)(&text).map_err(RedisError::String)?;
        *lock(&self.value) = Arc::new(parsed);
        *lock(&self.text) = text;
        Ok(())
    }
}

fn parse_actions(s: &str) -> Result<ActionTable, String> {
    ActionTable::parse(s).map_err(|e| e.0)
}

fn parse_prefix(s: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() || s.len() > 64 || s.contains('{') || s.contains('}') {
        return Err("bad key prefix — expected 1 to 64 bytes without { or }".into());
    }
    Ok(s.as_bytes().to_vec())
}

pub static ACTION_WEIGHTS: LazyLock<StringParam<ActionTable>> = LazyLock::new(|| StringParam {
    text: Mutex::new(DEFAULT_ACTION_WEIGHTS.to_string()),
    value: Mutex::new(Arc::new(ActionTable::default())),
    parse: parse_actions,
    last: Mutex::new(0),
});

pub const DEFAULT_KEY_PREFIX: &str = "rec:";

pub static KEY_PREFIX: LazyLock<StringParam<Vec<u8>>> = LazyLock::new(|| StringParam {
    text: Mutex::new(DEFAULT_KEY_PREFIX.to_string()),
    value: Mutex::new(Arc::new(DEFAULT_KEY_PREFIX.as_bytes().to_vec())),
    parse: parse_prefix,
    last: Mutex::new(0),
});

fn parse_unit(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("bad value — expected a number from 0 to 1".into()),
    }
}

fn parse_beta(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err("bad value — expected a number from 0 to 100".into()),
    }
}

fn parse_action_list(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() > 64 || names.iter().any(|n| n.len() > 32) {
        return Err("bad action list — expected at most 64 action names".into());
    }
    Ok(names)
}

fn string_param<T: Send + Sync + 'static>(
    default: &str,
    parse: fn(&str) -> Result<T, String>,
    fallback: T,
) -> StringParam<T> {
    StringParam {
        text: Mutex::new(default.to_string()),
        value: Mutex::new(Arc::new(parse(default).unwrap_or(fallback))),
        parse,
        last: Mutex::new(0),
    }
}

pub const DEFAULT_CACHE_JITTER: &str = "0.1";
pub const DEFAULT_CACHE_BETA: &str = "1";
pub const DEFAULT_INVALIDATING_ACTIONS: &str = "purchase rating add_to_cart dislike";

pub static CACHE_JITTER: LazyLock<StringParam<f64>> =
    LazyLock::new(|| string_param(DEFAULT_CACHE_JITTER, parse_unit, 0.1));
pub static CACHE_BETA: LazyLock<StringParam<f64>> =
    LazyLock::new(|| string_param(DEFAULT_CACHE_BETA, parse_beta, 1.0));
pub static INVALIDATING_ACTIONS: LazyLock<StringParam<Vec<String>>> =
    LazyLock::new(|| string_param(DEFAULT_INVALIDATING_ACTIONS, parse_action_list, Vec::new()));

fn parse_bind(s: &str) -> Result<std::net::IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| "bad address — expected an IP address such as 127.0.0.1".into())
}

pub const DEFAULT_METRICS_BIND: &str = "127.0.0.1";

pub static METRICS_BIND: LazyLock<StringParam<std::net::IpAddr>> = LazyLock::new(|| {
    string_param(
        DEFAULT_METRICS_BIND,
        parse_bind,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    )
});
