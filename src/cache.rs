//! The recommendation cache's storage: L1 (an in-process LRU) and L2 (one Redis hash per user,
//! `<prefix>{<user>}:c`, one field per request shape, expiring with a jittered TTL that
//! replicates as PEXPIREAT). What may be served is decided by `engine::cache`.

use crate::commands::binary_string;
use crate::config;
use crate::engine::cache::CachedList;
use lru::LruCache;
use redis_module::{CallOptionsBuilder, CallResult, Context, RedisString};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// Request shapes kept per user in L1.
const L1_SHAPES_PER_USER: usize = 8;

/// Cache counters for INFO.
pub struct CacheStats {
    pub l1_hits: AtomicU64,
    pub l2_hits: AtomicU64,
    pub misses: AtomicU64,
    pub early_refreshes: AtomicU64,
    pub fills: AtomicU64,
    pub inval_user: AtomicU64,
    pub inval_event: AtomicU64,
    pub inval_item: AtomicU64,
    pub inval_all: AtomicU64,
    pub stale_item: AtomicU64,
    pub stale_model: AtomicU64,
    pub stale_epoch: AtomicU64,
    pub l1_dropped_by_keyspace: AtomicU64,
    /// L2 keys present (counted through keyspace events).
    pub l2_keys: AtomicI64,
}

pub static STATS: CacheStats = CacheStats {
    l1_hits: AtomicU64::new(0),
    l2_hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
    early_refreshes: AtomicU64::new(0),
    fills: AtomicU64::new(0),
    inval_user: AtomicU64::new(0),
    inval_event: AtomicU64::new(0),
    inval_item: AtomicU64::new(0),
    inval_all: AtomicU64::new(0),
    stale_item: AtomicU64::new(0),
    stale_model: AtomicU64::new(0),
    stale_epoch: AtomicU64::new(0),
    l1_dropped_by_keyspace: AtomicU64::new(0),
    l2_keys: AtomicI64::new(0),
};

/// REC.METRICS RESET: zero the counters (not the gauges).
pub fn reset_counters() {
    let s = &STATS;
    for c in [
        &s.l1_hits,
        &s.l2_hits,
        &s.misses,
        &s.early_refreshes,
        &s.fills,
        &s.inval_user,
        &s.inval_event,
        &s.inval_item,
        &s.inval_all,
        &s.stale_item,
        &s.stale_model,
        &s.stale_epoch,
        &s.l1_dropped_by_keyspace,
    ] {
        c.store(0, Ordering::Relaxed);
    }
}

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

type Shapes = Vec<(String, Arc<CachedList>)>;

struct L1 {
    lru: LruCache<Vec<u8>, Shapes>,
    lists: usize,
    bytes: usize,
}

fn shapes_bytes(key: &[u8], s: &Shapes) -> usize {
    key.len()
        + 64
        + s.iter()
            .map(|(k, l)| k.len() + 40 + l.mem_bytes())
            .sum::<usize>()
}

static L1_CACHE: LazyLock<Mutex<L1>> = LazyLock::new(|| {
    Mutex::new(L1 {
        lru: LruCache::new(NonZeroUsize::MIN),
        lists: 0,
        bytes: 0,
    })
});

fn l1() -> MutexGuard<'static, L1> {
    let mut g = L1_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    // Follow CONFIG SET rec.l1-size.
    let want = NonZeroUsize::new(config::get(&config::L1_SIZE)).unwrap_or(NonZeroUsize::MIN);
    if g.lru.cap() != want {
        g.lru.resize(want);
        g.recount();
    }
    g
}

impl L1 {
    fn recount(&mut self) {
        self.lists = self.lru.iter().map(|(_, s)| s.len()).sum();
        self.bytes = self.lru.iter().map(|(k, s)| shapes_bytes(k, s)).sum();
    }

    fn remove(&mut self, key: &[u8]) -> usize {
        match self.lru.pop(key) {
            Some(s) => {
                self.lists -= s.len().min(self.lists);
                self.bytes = self.bytes.saturating_sub(shapes_bytes(key, &s));
                s.len()
            }
            None => 0,
        }
    }
}

pub fn l1_enabled() -> bool {
    config::get(&config::L1_SIZE) > 0
}

pub fn l1_get(key: &[u8], shape: &str) -> Option<Arc<CachedList>> {
    if !l1_enabled() {
        return None;
    }
    let mut g = l1();
    let s = g.lru.get(key)?;
    s.iter().find(|(k, _)| k == shape).map(|(_, l)| l.clone())
}

pub fn l1_put(key: &[u8], shape: &str, list: Arc<CachedList>) {
    if !l1_enabled() {
        return;
    }
    let mut g = l1();
    let mut shapes = match g.lru.pop(key) {
        Some(s) => {
            g.lists -= s.len().min(g.lists);
            g.bytes = g.bytes.saturating_sub(shapes_bytes(key, &s));
            s
        }
        None => Vec::new(),
    };
    shapes.retain(|(k, _)| k != shape);
    shapes.push((shape.to_string(), list));
    if shapes.len() > L1_SHAPES_PER_USER {
        shapes.remove(0);
    }
    g.lists += shapes.len();
    g.bytes += shapes_bytes(key, &shapes);
    if let Some((old_k, old_s)) = g.lru.push(key.to_vec(), shapes) {
        if old_k != key {
            g.lists -= old_s.len().min(g.lists);
            g.bytes = g.bytes.saturating_sub(shapes_bytes(&old_k, &old_s));
        }
    }
}

/// Drops a user's L1 lists; returns how many.
pub fn l1_drop(key: &[u8]) -> usize {
    l1().remove(key)
}

/// Drops every L1 list; returns how many.
pub fn l1_clear() -> usize {
    let mut g = L1_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let n = g.lists;
    g.lru.clear();
    g.lists = 0;
    g.bytes = 0;
    n
}

/// Drops the L1 lists that contain `item`; returns how many.
pub fn l1_drop_item(item: &[u8]) -> usize {
    let mut g = l1();
    let mut dropped = 0;
    for (_, shapes) in g.lru.iter_mut() {
        let before = shapes.len();
        shapes.retain(|(_, l)| !l.contains(item));
        dropped += before - shapes.len();
    }
    g.recount();
    dropped
}

/// (lists, bytes, users) held in L1.
pub fn l1_size() -> (usize, usize, usize) {
    let g = L1_CACHE.lock().unwrap_or_else(|e| e.into_inner());
    (g.lists, g.bytes, g.lru.len())
}

/// The name of a user's L2 key (`<prefix>{<tag>}:c`, in the user's slot).
pub fn cache_key(user: &[u8]) -> Vec<u8> {
    crate::keys::user_key(&config::KEY_PREFIX.value(), user, b'c')
}

/// Reads one cached list from L2 (None when absent or unreadable).
pub fn l2_get(ctx: &Context, key: &RedisString, shape: &str) -> Option<CachedList> {
    let k = ctx.open_key(key);
    let v = k.hash_get(shape).ok()??;
    CachedList::decode(v.as_slice()).ok()
}

/// Writes a list into L2 and sets the key's absolute expiry; both replicate as written
/// (HSET, PEXPIREAT with the time this node chose). Best effort: under OOM nothing is cached.
pub fn l2_put(ctx: &Context, key: &[u8], shape: &str, list: &CachedList) -> bool {
    let existed = ctx.open_key(&binary_string(ctx, key)).key_type() != redis_module::KeyType::Empty;
    let opts = CallOptionsBuilder::new()
        .replicate()
        .verify_oom()
        .errors_as_replies()
        .build();
    let value = list.encode();
    let expiry = list.expiry_ms.to_string();
    let hset: CallResult = ctx.call_ext("HSET", &opts, &[key, shape.as_bytes(), &value][..]);
    if hset.is_err() {
        return false;
    }
    let exp: CallResult = ctx.call_ext("PEXPIREAT", &opts, &[key, expiry.as_bytes()][..]);
    if !existed {
        STATS.l2_keys.fetch_add(1, Ordering::Relaxed);
    }
    bump(&STATS.fills);
    exp.is_ok()
}

/// Deletes a user's L2 key and L1 lists locally (callers replicate the command that did it);
/// returns how many cached lists were dropped.
pub fn drop_user(ctx: &Context, key: &[u8]) -> usize {
    let name = binary_string(ctx, key);
    let k = ctx.open_key_writable(&name);
    let mut fields = 0;
    if k.key_type() == redis_module::KeyType::Hash {
        let len: CallResult = ctx.call_ext("HLEN", &CallOptionsBuilder::new().build(), &[key][..]);
        if let Ok(redis_module::CallReply::I64(n)) = len {
            fields = usize::try_from(n.to_i64()).unwrap_or(0);
        }
        let _ = k.delete();
        // The module key API fires no event of its own: tell everyone (our handler included).
        ctx.notify_keyspace_event(redis_module::NotifyEvent::GENERIC, "del", &name);
    }
    fields.max(l1_drop(key))
}

/// Whether a key name is one of our L2 keys (for keyspace events).
pub fn is_cache_key(key: &[u8]) -> bool {
    let prefix = config::KEY_PREFIX.value();
    if !key.starts_with(&prefix) {
        return false;
    }
    let rest = &key[prefix.len()..];
    // `{<tag>}:c`, or `{<tag>}:c:<user>` where the user's hash tag is <tag> (keys.rs).
    if let Some(inner) = rest.strip_prefix(b"{") {
        let Some(close) = inner.iter().position(|&b| b == b'}') else {
            return false;
        };
        let (tag, after) = (&inner[..close], &inner[close + 1..]);
        if after == b":c" {
            return true;
        }
        return match after.strip_prefix(b":c:") {
            Some(user) => crate::keys::hash_tag(user) == tag && user != tag,
            None => false,
        };
    }
    // `h:<hex>:c:<2-3 solved bytes>`.
    let Some(hex) = rest.strip_prefix(b"h:") else {
        return false;
    };
    let digits = hex.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    matches!(hex[digits..].strip_prefix(b":c:"), Some(n) if n.len() == 3)
}

/// Keyspace events: a DEL, expiry or eviction of an L2 key drops the matching L1 lists.
pub fn on_key_event(_ctx: &Context, _kind: redis_module::NotifyEvent, event: &str, key: &[u8]) {
    let _ = std::panic::catch_unwind(|| {
        if !is_cache_key(key) {
            return;
        }
        match event {
            "del" | "expired" | "evicted" | "rename_from" | "move_from" => {
                STATS.l2_keys.fetch_sub(1, Ordering::Relaxed);
                if l1_drop(key) > 0 {
                    bump(&STATS.l1_dropped_by_keyspace);
                }
            }
            "loaded" | "rename_to" | "move_to" | "restore" => {
                STATS.l2_keys.fetch_add(1, Ordering::Relaxed);
                l1_drop(key);
            }
            _ => {}
        }
    });
}

/// A uniform draw in [0, 1): SplitMix64 seeded from the clock; only for TTL jitter and XFetch,
/// whose outcomes replicate as effects.
pub fn uniform() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            | 1;
    }
    s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    STATE.store(s, Ordering::Relaxed);
    let mut z = s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::user_key;

    #[test]
    fn cache_keys_are_recognised_by_their_layout() {
        for id in [
            &b"alice"[..],
            b"a{b}c",
            b"a}b",
            b"{}x",
            b"a{b}:c",
            b"z{t}:c:x",
            b"c",
        ] {
            assert!(is_cache_key(&user_key(b"rec:", id, b'c')), "{id:?}");
            assert!(!is_cache_key(&user_key(b"rec:", id, b'u')), "{id:?}");
        }
        assert!(!is_cache_key(b"other:{x}:c"));
    }
}
