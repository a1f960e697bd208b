//! Time-decayed popularity with ordered indexes, global and per category.
//!
//! Scores are stored as their value at a common anchor time: an event of weight `w` at time `t`
//! adds `w * 2^((t - anchor) / half_life)`. Decay then never needs a sweep, all scores keep their
//! order as time passes, and the order-preserving indexes answer "top N" without scanning the
//! catalog. When events run far past the anchor, every score is rescaled once to a new anchor.

use super::catalog::ItemRef;
use super::codec::{DResult, Reader, Writer};
use std::collections::{BTreeSet, HashMap};

/// Rebase once events run this many half-lives past the anchor (2^64 keeps f64 precise).
const REBASE_HALF_LIVES: f64 = 64.0;

/// Descending order by score, then ascending slot index (deterministic ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PopKey {
    inv_score: u64,
    pub idx: u32,
}

impl PopKey {
    pub fn new(score: f64, idx: u32) -> Self {
        // For non-negative finite floats the bit pattern orders like the value.
        PopKey {
            inv_score: u64::MAX - score.max(0.0).to_bits(),
            idx,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct PopIndex {
    /// Time (ms) at which stored scores are expressed; 0 until the first event.
    pub anchor_ms: i64,
    /// The latest event time seen: what displayed scores are decayed to.
    pub clock_ms: i64,
    global: BTreeSet<PopKey>,
    by_category: HashMap<u32, BTreeSet<PopKey>>,
    /// (idx, gen) of each indexed slot, to rebuild references from keys.
    gens: HashMap<u32, u32>,
}

impl PopIndex {
    /// The factor that turns a weight at `ts` into anchor units. `None` means rebase first.
    pub fn factor(&self, ts: i64, half_life_ms: f64) -> Option<f64> {
        let e = (ts - self.anchor_ms) as f64 / half_life_ms.max(1.0);
        if e > REBASE_HALF_LIVES {
            None
        } else {
            Some(2f64.powf(e))
        }
    }

    /// The factor that moves stored scores to a new anchor `ts`.
    pub fn rebase_factor(&self, ts: i64, half_life_ms: f64) -> f64 {
        2f64.powf(-((ts - self.anchor_ms) as f64) / half_life_ms.max(1.0))
    }

    /// Displayed score: the stored score decayed to the latest event time.
    pub fn display(&self, stored: f64, half_life_ms: f64) -> f64 {
        stored * 2f64.powf((self.anchor_ms - self.clock_ms) as f64 / half_life_ms.max(1.0))
    }

    pub fn insert(&mut self, r: ItemRef, score: f64, category: Option<u32>) {
        if score <= 0.0 {
            return;
        }
        let k = PopKey::new(score, r.idx);
        self.global.insert(k);
        self.gens.insert(r.idx, r.gen);
        if let Some(c) = category {
            self.by_category.entry(c).or_default().insert(k);
        }
    }

    pub fn remove(&mut self, r: ItemRef, score: f64, category: Option<u32>) {
        let k = PopKey::new(score, r.idx);
        if self.global.remove(&k) {
            self.gens.remove(&r.idx);
        }
        if let Some(c) = category {
            if let Some(set) = self.by_category.get_mut(&c) {
                set.remove(&k);
                if set.is_empty() {
                    self.by_category.remove(&c);
                }
            }
        }
    }

    pub fn clear_sets(&mut self) {
        self.global.clear();
        self.by_category.clear();
        self.gens.clear();
    }

    /// Items in popularity order, optionally within one category.
    pub fn iter(&self, category: Option<u32>) -> Box<dyn Iterator<Item = ItemRef> + '_> {
        let gens = &self.gens;
        let to_ref = move |k: &PopKey| ItemRef {
            idx: k.idx,
            gen: gens.get(&k.idx).copied().unwrap_or(u32::MAX),
        };
        match category {
            None => Box::new(self.global.iter().map(to_ref)),
            Some(c) => match self.by_category.get(&c) {
                Some(set) => Box::new(set.iter().map(to_ref)),
                None => Box::new(std::iter::empty()),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.global.len()
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty()
    }

    pub fn mem_bytes(&self) -> usize {
        let per = std::mem::size_of::<PopKey>() + 16;
        let cat: usize = self.by_category.values().map(|s| s.len() * per + 64).sum();
        self.global.len() * per + cat + self.gens.capacity() * 16
    }

    pub fn save(&self, w: &mut Writer) {
        w.i64(self.anchor_ms);
        w.i64(self.clock_ms);
    }

    /// Loads the clock; the sets are rebuilt from the catalog by the caller.
    pub fn load(r: &mut Reader) -> DResult<Self> {
        Ok(PopIndex {
            anchor_ms: r.i64()?,
            clock_ms: r.i64()?,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(i: u32) -> ItemRef {
        ItemRef { idx: i, gen: 0 }
    }

    #[test]
    fn orders_by_score_then_index() {
        let mut p = PopIndex::default();
        p.insert(r(1), 1.0, Some(7));
        p.insert(r(2), 3.0, None);
        p.insert(r(3), 1.0, Some(7));
        let order: Vec<u32> = p.iter(None).map(|x| x.idx).collect();
        assert_eq!(order, vec![2, 1, 3]);
        let cat: Vec<u32> = p.iter(Some(7)).map(|x| x.idx).collect();
        assert_eq!(cat, vec![1, 3]);
        p.remove(r(1), 1.0, Some(7));
        assert_eq!(p.iter(Some(7)).count(), 1);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn decay_factors() {
        let p = PopIndex::default();
        let hl = 1000.0;
        assert_eq!(p.factor(1000, hl), Some(2.0));
        assert_eq!(p.factor(-1000, hl), Some(0.5));
        assert_eq!(p.factor(65_000, hl), None, "far past the anchor: rebase");
        assert!((p.rebase_factor(2000, hl) - 0.25).abs() < 1e-15);
        let mut p = p;
        p.clock_ms = 1000;
        // An event of weight 1 at t=0, displayed one half-life later, is worth 0.5.
        assert!((p.display(1.0, hl) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn zero_scores_are_not_indexed() {
        let mut p = PopIndex::default();
        p.insert(r(1), 0.0, None);
        assert!(p.is_empty());
    }
}
