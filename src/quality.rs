//! Recommendation quality, kept per node over a sliding window (`rec.quality-window`):
//! impressions, clicks and conversions per model; catalog coverage; intra-list diversity and
//! category entropy per model. Like INFO stats, this is node-local and not replicated.

use std::collections::{BTreeMap, HashMap};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// Slots the window is divided into (each covers window/SLOTS).
const SLOTS: usize = 60;
/// Categories counted per slot; the rest are counted together.
const MAX_SLOT_CATEGORIES: usize = 1000;
/// Models tracked; later names are counted under "other".
const MAX_MODELS: usize = 256;

#[derive(Default, Clone)]
struct Slot {
    start_ms: i64,
    lists: u64,
    diversity_sum: f64,
    categories: HashMap<Box<[u8]>, u64>,
    other_categories: u64,
}

#[derive(Default, Clone)]
pub struct ModelQuality {
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    slots: Vec<Slot>,
}

/// What INFO and REC.METRICS report for one model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelReport {
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    pub ctr: f64,
    pub conversion_rate: f64,
    pub lists: u64,
    pub diversity: f64,
    pub entropy: f64,
}

#[derive(Default)]
pub struct Quality {
    models: BTreeMap<String, ModelQuality>,
    /// Item id → when it was last recommended.
    recommended: HashMap<Box<[u8]>, i64>,
}

static QUALITY: LazyLock<Mutex<Quality>> = LazyLock::new(|| Mutex::new(Quality::default()));

pub fn quality() -> MutexGuard<'static, Quality> {
    QUALITY.lock().unwrap_or_else(|e| e.into_inner())
}

pub use crate::engine::cache::intra_list_diversity;

/// Shannon entropy of the counts divided by ln(k), k = the number of categories that could
/// have been recommended (the catalog's); 0 when k < 2.
pub fn normalized_entropy(counts: impl Iterator<Item = u64>, k: usize) -> f64 {
    let counts: Vec<u64> = counts.filter(|&c| c > 0).collect();
    let total: u64 = counts.iter().sum();
    if total == 0 || k < 2 {
        return 0.0;
    }
    let h: f64 = counts
        .iter()
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    let e = h / (k as f64).ln();
    // One category gives -0.0 here; report a plain 0.
    if e > 0.0 {
        e.min(1.0)
    } else {
        0.0
    }
}

impl Quality {
    /// The model's record, created on first use (allocating only then).
    fn model_mut(&mut self, model: &str) -> Option<&mut ModelQuality> {
        let name = if self.models.contains_key(model) || self.models.len() < MAX_MODELS {
            model
        } else {
            "other"
        };
        if !self.models.contains_key(name) {
            self.models
                .insert(name.to_string(), ModelQuality::default());
        }
        self.models.get_mut(name)
    }

    /// One served list: its items' categories and its (precomputed) diversity. `covered` are
    /// the item ids to count for catalog coverage: a freshly computed list's; a list served
    /// again from cache within its TTL holds items its computation already counted.
    #[allow(clippy::too_many_arguments)]
    pub fn record_list<'a>(
        &mut self,
        model: &str,
        cats: impl Iterator<Item = Option<&'a [u8]>>,
        diversity: f64,
        covered: Option<&[&[u8]]>,
        now_ms: i64,
        window_ms: i64,
        max_items: usize,
    ) {
        let slot_ms = (window_ms / SLOTS as i64).max(1);
        let Some(m) = self.model_mut(model) else {
            return;
        };
        let mut n_items = 0u64;
        if m.slots.is_empty() {
            m.slots = vec![Slot::default(); SLOTS];
        }
        let idx = ((now_ms.max(0) / slot_ms) as usize) % SLOTS;
        let start = now_ms - now_ms.rem_euclid(slot_ms);
        if let Some(slot) = m.slots.get_mut(idx) {
            if slot.start_ms != start {
                *slot = Slot {
                    start_ms: start,
                    ..Default::default()
                };
            }
            slot.lists += 1;
            slot.diversity_sum += diversity;
            for c in cats {
                n_items += 1;
                let Some(c) = c else { continue };
                if let Some(n) = slot.categories.get_mut(c) {
                    *n += 1;
                } else if slot.categories.len() < MAX_SLOT_CATEGORIES {
                    slot.categories.insert(c.into(), 1);
                } else {
                    slot.other_categories += 1;
                }
            }
        }
        m.impressions += n_items;
        let Some(items) = covered else {
            return;
        };
        if self.recommended.len() >= max_items {
            let cutoff = now_ms - window_ms;
            self.recommended.retain(|_, t| *t >= cutoff);
        }
        for id in items {
            if let Some(t) = self.recommended.get_mut(*id) {
                *t = now_ms;
            } else if self.recommended.len() < max_items {
                self.recommended.insert((*id).into(), now_ms);
            }
        }
    }

    pub fn record_click(&mut self, model: &str) {
        if let Some(m) = self.model_mut(model) {
            m.clicks += 1;
        }
    }

    pub fn record_conversion(&mut self, model: &str) {
        if let Some(m) = self.model_mut(model) {
            m.conversions += 1;
        }
    }

    /// Distinct items recommended within the window.
    /// Distinct items recommended within the window that `available` still accepts.
    pub fn covered(&self, now_ms: i64, window_ms: i64, available: impl Fn(&[u8]) -> bool) -> usize {
        let cutoff = now_ms - window_ms;
        self.recommended
            .iter()
            .filter(|(id, &t)| t >= cutoff && available(id))
            .count()
    }

    pub fn reports(
        &self,
        now_ms: i64,
        window_ms: i64,
        categories: usize,
    ) -> Vec<(String, ModelReport)> {
        let cutoff = now_ms - window_ms;
        self.models
            .iter()
            .map(|(name, m)| {
                let live: Vec<&Slot> = m
                    .slots
                    .iter()
                    .filter(|s| s.lists > 0 && s.start_ms > cutoff)
                    .collect();
                let lists: u64 = live.iter().map(|s| s.lists).sum();
                let div: f64 = live.iter().map(|s| s.diversity_sum).sum();
                let mut cat_counts: HashMap<&[u8], u64> = HashMap::new();
                let mut other = 0;
                for s in &live {
                    for (c, n) in &s.categories {
                        *cat_counts.entry(c).or_insert(0) += n;
                    }
                    other += s.other_categories;
                }
                let entropy = normalized_entropy(
                    cat_counts.values().copied().chain(std::iter::once(other)),
                    categories,
                );
                let rate = |x: u64| {
                    if m.impressions > 0 {
                        x as f64 / m.impressions as f64
                    } else {
                        0.0
                    }
                };
                (
                    name.clone(),
                    ModelReport {
                        impressions: m.impressions,
                        clicks: m.clicks,
                        conversions: m.conversions,
                        ctr: rate(m.clicks),
                        conversion_rate: rate(m.conversions),
                        lists,
                        diversity: if lists > 0 { div / lists as f64 } else { 0.0 },
                        entropy,
                    },
                )
            })
            .collect()
    }

    pub fn reset(&mut self) {
        *self = Quality::default();
    }

    pub fn mem_bytes(&self) -> usize {
        let rec: usize = self.recommended.keys().map(|k| k.len() + 48).sum();
        let models: usize = self
            .models
            .values()
            .map(|m| {
                m.slots
                    .iter()
                    .map(|s| 64 + s.categories.keys().map(|k| k.len() + 40).sum::<usize>())
                    .sum::<usize>()
            })
            .sum();
        rec + models
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_counts_pairs() {
        let (a, b): (&[u8], &[u8]) = (b"a", b"b");
        assert_eq!(intra_list_diversity(&[Some(a), Some(a)]), 0.0);
        assert_eq!(intra_list_diversity(&[Some(a), Some(b)]), 1.0);
        // pairs: (a,a) same, (a,b) x2 differ → 2/3
        assert!((intra_list_diversity(&[Some(a), Some(a), Some(b)]) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(intra_list_diversity(&[None, None]), 1.0);
        assert_eq!(intra_list_diversity(&[Some(a)]), 0.0);
    }

    #[test]
    fn entropy_is_normalized() {
        assert!((normalized_entropy([5, 5].into_iter(), 2) - 1.0).abs() < 1e-12);
        assert_eq!(normalized_entropy([10].into_iter(), 5), 0.0);
        let e = normalized_entropy([1, 1].into_iter(), 4);
        assert!((e - 0.5).abs() < 1e-12);
        assert_eq!(normalized_entropy(std::iter::empty(), 4), 0.0);
    }

    #[test]
    fn window_and_rates() {
        let mut q = Quality::default();
        let (a, b): (&[u8], &[u8]) = (b"a", b"b");
        let ids: [&[u8]; 2] = [b"1", b"2"];
        let cats = [Some(a), Some(b)];
        q.record_list(
            "m",
            cats.iter().copied(),
            intra_list_diversity(&cats),
            Some(&ids),
            1_000,
            60_000,
            100,
        );
        q.record_click("m");
        q.record_conversion("m");
        let r = &q.reports(1_000, 60_000, 2)[0].1;
        assert_eq!(r.impressions, 2);
        assert_eq!(r.ctr, 0.5);
        assert_eq!(r.diversity, 1.0);
        assert!((r.entropy - 1.0).abs() < 1e-12);
        assert_eq!(q.covered(1_000, 60_000, |_| true), 2);
        // Past the window the list no longer counts for coverage or diversity.
        assert_eq!(q.covered(200_000, 60_000, |_| true), 0);
        assert_eq!(q.reports(200_000, 60_000, 2)[0].1.lists, 0);
        q.reset();
        assert!(q.reports(0, 60_000, 2).is_empty());
    }
}
