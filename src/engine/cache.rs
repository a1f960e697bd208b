//! Cache policy for computed lists: what a cached list records, when it may still be served,
//! jittered expiry and probabilistic early refresh (XFetch). Storage is the shell's business.
//!
//! Staleness is decided by stamps checked on read, not by reverse indexes: every item and model
//! carries the stamp of its last change, the engine a cache epoch, and a list remembers what it
//! saw. A list is served only if its epoch, its model's stamp and every item's stamp still match.

use super::catalog::ItemRef;
use super::codec::{DResult, DecodeError, Reader, Writer};
use super::ranking::RecList;
use super::Engine;

const LIST_VERSION: u8 = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct CachedItem {
    pub id: Box<[u8]>,
    pub score: f64,
    pub reason: Box<[u8]>,
    /// The item's stamp when the list was computed.
    pub stamp: u64,
    /// Its category then (valid while the stamp matches), for quality metrics.
    pub category: Option<Box<[u8]>>,
    /// Where the catalog kept it: a hint that spares hashing the id on every hit (checked
    /// against the id, so a list read on another node falls back to the lookup).
    pub slot: ItemRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CachedList {
    pub computed_ms: i64,
    pub expiry_ms: i64,
    /// How long the computation took (the XFetch delta), in microseconds.
    pub delta_us: u64,
    pub epoch: u64,
    /// The model requested, and its stamp.
    pub requested_model: String,
    pub model_stamp: u64,
    /// The model that scored the list (`popular` on fallback).
    pub model: String,
    pub items: Vec<CachedItem>,
    /// Intra-list diversity, computed once.
    pub diversity: f64,
}

/// Share of item pairs whose categories differ (items without a category differ from all).
pub fn intra_list_diversity(cats: &[Option<&[u8]>]) -> f64 {
    let n = cats.len();
    if n < 2 {
        return 0.0;
    }
    let mut differ = 0usize;
    for i in 0..n {
        for j in i + 1..n {
            match (cats[i], cats[j]) {
                (Some(a), Some(b)) if a == b => {}
                _ => differ += 1,
            }
        }
    }
    differ as f64 / (n * (n - 1) / 2) as f64
}

impl CachedList {
    /// Captures a freshly computed list with the stamps it depends on.
    pub fn capture(
        e: &Engine,
        list: &RecList,
        requested_model: &str,
        computed_ms: i64,
        expiry_ms: i64,
        delta_us: u64,
    ) -> Self {
        let items: Vec<CachedItem> = list
            .items
            .iter()
            .map(|r| {
                let it = e.catalog.get_by_id(&r.id);
                CachedItem {
                    slot: e.catalog.lookup(&r.id).unwrap_or(ItemRef {
                        idx: u32::MAX,
                        gen: 0,
                    }),
                    id: r.id.as_slice().into(),
                    score: r.score,
                    reason: r.reason.render().into(),
                    stamp: it.map_or(0, |it| it.stamp),
                    category: it
                        .and_then(|it| it.category)
                        .map(|c| e.catalog.category_name(c).into()),
                }
            })
            .collect();
        let cats: Vec<Option<&[u8]>> = items.iter().map(|x| x.category.as_deref()).collect();
        let diversity = intra_list_diversity(&cats);
        CachedList {
            computed_ms,
            expiry_ms,
            delta_us,
            epoch: e.cache_epoch,
            requested_model: requested_model.to_string(),
            model_stamp: e.models.stamp(requested_model).unwrap_or(0),
            model: list.model.clone(),
            items,
            diversity,
        }
    }

    /// Whether nothing this list depends on has changed since it was computed.
    pub fn is_current(&self, e: &Engine) -> Staleness {
        if self.epoch != e.cache_epoch {
            return Staleness::Epoch;
        }
        if e.models.stamp(&self.requested_model) != Some(self.model_stamp) {
            return Staleness::Model;
        }
        for it in &self.items {
            let item = match e.catalog.get(it.slot) {
                Some(x) if x.id == it.id => Some(x),
                _ => e.catalog.get_by_id(&it.id),
            };
            match item {
                Some(x) if x.available && x.stamp == it.stamp => {}
                _ => return Staleness::Item,
            }
        }
        Staleness::Current
    }

    pub fn contains(&self, id: &[u8]) -> bool {
        self.items.iter().any(|x| &*x.id == id)
    }

    pub fn mem_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.requested_model.len()
            + self.model.len()
            + self
                .items
                .iter()
                .map(|x| {
                    std::mem::size_of::<CachedItem>()
                        + x.id.len()
                        + x.reason.len()
                        + x.category.as_ref().map_or(0, |c| c.len())
                })
                .sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(LIST_VERSION);
        w.i64(self.computed_ms);
        w.i64(self.expiry_ms);
        w.u64(self.delta_us);
        w.u64(self.epoch);
        w.bytes(self.requested_model.as_bytes());
        w.u64(self.model_stamp);
        w.bytes(self.model.as_bytes());
        w.len(self.items.len());
        for it in &self.items {
            w.bytes(&it.id);
            w.f64(it.score);
            w.bytes(&it.reason);
            w.u64(it.stamp);
            w.opt_bytes(it.category.as_deref());
            w.u32(it.slot.idx);
            w.u32(it.slot.gen);
        }
        w.f64(self.diversity);
        w.buf
    }

    pub fn decode(buf: &[u8]) -> DResult<Self> {
        let mut r = Reader::new(buf);
        if r.u8()? != LIST_VERSION {
            return Err(DecodeError("unknown cached list version"));
        }
        let mut l = CachedList {
            computed_ms: r.i64()?,
            expiry_ms: r.i64()?,
            delta_us: r.u64()?,
            epoch: r.u64()?,
            requested_model: r.string()?,
            model_stamp: r.u64()?,
            model: r.string()?,
            items: Vec::new(),
            diversity: 0.0,
        };
        let n = r.len(37)?;
        for _ in 0..n {
            l.items.push(CachedItem {
                id: r.boxed()?,
                score: r.f64()?,
                reason: r.boxed()?,
                stamp: r.u64()?,
                category: r.opt_boxed()?,
                slot: ItemRef {
                    idx: r.u32()?,
                    gen: r.u32()?,
                },
            });
        }
        l.diversity = r.f64()?;
        r.finish()?;
        Ok(l)
    }
}

/// Why a cached list can't be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    Current,
    Epoch,
    Model,
    Item,
}

/// A TTL drawn uniformly from `ttl ± jitter × ttl`; `u` is uniform in [0, 1).
pub fn jittered_ttl_ms(ttl_ms: i64, jitter: f64, u: f64) -> i64 {
    let f = 1.0 + jitter.clamp(0.0, 1.0) * (2.0 * u.clamp(0.0, 1.0) - 1.0);
    ((ttl_ms as f64) * f).round().max(1.0) as i64
}

/// XFetch: recompute early when `now - delta × beta × ln(u) >= expiry`; `u` uniform in (0, 1].
pub fn should_refresh_early(now_ms: i64, expiry_ms: i64, delta_ms: f64, beta: f64, u: f64) -> bool {
    let u = u.clamp(f64::MIN_POSITIVE, 1.0);
    (now_ms as f64) - delta_ms * beta * u.ln() >= expiry_ms as f64
}

/// The request shape a cached list answers: everything that changes the list's content.
/// Hex keeps binary ids printable in the L2 hash field name.
pub fn shape_key(
    count: usize,
    model: &str,
    category: Option<&[u8]>,
    exclude: &[&[u8]],
    max_per_category: usize,
) -> String {
    fn hex(out: &mut String, b: &[u8]) {
        for x in b {
            out.push_str(&format!("{x:02x}"));
        }
    }
    let mut s = format!("n{count}:m{model}:k{max_per_category}");
    if let Some(c) = category {
        s.push_str(":c");
        hex(&mut s, c);
    }
    if !exclude.is_empty() {
        let mut ex: Vec<&[u8]> = exclude.to_vec();
        ex.sort_unstable();
        ex.dedup();
        s.push_str(":x");
        for (i, x) in ex.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            hex(&mut s, x);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::actions::ActionTable;
    use super::super::catalog::ItemUpdate;
    use super::super::model::{Model, ModelUpdate, DEFAULT_MODEL};
    use super::super::ranking::RecRequest;
    use super::super::tests::track;
    use super::super::user::UserState;
    use super::super::Settings;
    use super::*;

    fn setup() -> (Engine, CachedList) {
        let t = ActionTable::default();
        let mut e = Engine::default();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "a", "view", 1);
        track(&mut e, &mut u, &t, "b", "view", 2);
        let req = RecRequest {
            count: 5,
            model_name: DEFAULT_MODEL,
            model: Model::DEFAULT,
            category: None,
            exclude: &[],
            max_per_category: 3,
        };
        let l = e.recommend(None, &req, &Settings::default());
        assert!(!l.items.is_empty());
        let c = CachedList::capture(&e, &l, DEFAULT_MODEL, 10, 20, 30);
        (e, c)
    }

    #[test]
    fn stamps_detect_every_change() {
        let (mut e, c) = setup();
        assert_eq!(c.is_current(&e), Staleness::Current);
        let s = Settings::default();
        // Changing an item that is not in the list keeps it current.
        e.item_set(b"zzz", ItemUpdate::default(), &s).unwrap();
        assert_eq!(c.is_current(&e), Staleness::Current);
        let mut e2 = e.clone();
        e2.item_set(b"a", ItemUpdate::default(), &s).unwrap();
        assert_eq!(c.is_current(&e2), Staleness::Item);
        let mut e3 = e.clone();
        e3.item_del(b"b");
        assert_eq!(c.is_current(&e3), Staleness::Item);
        let mut e4 = e.clone();
        e4.model_set(DEFAULT_MODEL, ModelUpdate::default());
        assert_eq!(c.is_current(&e4), Staleness::Model);
        let mut e5 = e.clone();
        e5.invalidate_all();
        assert_eq!(c.is_current(&e5), Staleness::Epoch);
        let mut e6 = e.clone();
        assert!(e6.invalidate_item(b"a"));
        assert_eq!(c.is_current(&e6), Staleness::Item);
    }

    #[test]
    fn encoding_round_trip_and_truncation() {
        let (_, c) = setup();
        let b = c.encode();
        assert_eq!(CachedList::decode(&b).unwrap(), c);
        for cut in 0..b.len() {
            assert!(CachedList::decode(&b[..cut]).is_err());
        }
    }

    #[test]
    fn jitter_spans_the_range() {
        assert_eq!(jittered_ttl_ms(300_000, 0.1, 0.0), 270_000);
        assert_eq!(jittered_ttl_ms(300_000, 0.1, 0.5), 300_000);
        assert_eq!(jittered_ttl_ms(300_000, 0.1, 0.99), 329_400);
        assert_eq!(jittered_ttl_ms(300_000, 0.0, 0.9), 300_000);
    }

    #[test]
    fn xfetch_rises_towards_expiry() {
        // Far from expiry: only an extremely unlucky draw refreshes.
        assert!(!should_refresh_early(0, 100_000, 10.0, 1.0, 0.5));
        // At expiry: always.
        assert!(should_refresh_early(100_000, 100_000, 10.0, 1.0, 1.0));
        // Within a few deltas: a small u triggers it.
        assert!(should_refresh_early(99_980, 100_000, 10.0, 1.0, 0.01));
        assert!(!should_refresh_early(99_980, 100_000, 10.0, 1.0, 0.9));
    }

    #[test]
    fn shapes_differ_by_what_changes_the_list() {
        let a = shape_key(10, "default", None, &[], 3);
        assert_ne!(a, shape_key(11, "default", None, &[], 3));
        assert_ne!(a, shape_key(10, "other", None, &[], 3));
        assert_ne!(a, shape_key(10, "default", Some(b"c"), &[], 3));
        assert_ne!(a, shape_key(10, "default", None, &[b"x"], 3));
        assert_eq!(
            shape_key(10, "default", None, &[b"y", b"x"], 3),
            shape_key(10, "default", None, &[b"x", b"y", b"x"], 3)
        );
    }
}
