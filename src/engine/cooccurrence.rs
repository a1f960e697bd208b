//! Item-to-item co-occurrence, learned online and bounded per item.
//!
//! Each item keeps at most `rec.neighbors` neighbours. When a list is full, a new neighbour
//! replaces the weakest one and inherits its weight (the Space-Saving rule), so items that keep
//! co-occurring climb in, and heavy pairs are never lost to a stream of one-off pairs.

use super::catalog::ItemRef;
use super::codec::{DResult, Reader, Writer};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub item: ItemRef,
    pub weight: f32,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Neighbors {
    pub list: Vec<Neighbor>,
}

impl Neighbors {
    /// Adds `w` to the pair (self, `other`), pruning references that `live` rejects.
    pub fn add(&mut self, other: ItemRef, w: f32, max: usize, live: impl Fn(ItemRef) -> bool) {
        if max == 0 || !(w.is_finite() && w > 0.0) {
            return;
        }
        if let Some(n) = self.list.iter_mut().find(|n| n.item == other) {
            n.weight += w;
            return;
        }
        if self.list.len() >= max {
            self.list.retain(|n| live(n.item));
        }
        if self.list.len() < max {
            self.list.push(Neighbor {
                item: other,
                weight: w,
            });
            return;
        }
        // Full: the weakest entry (first on ties, for determinism) gives way.
        let mut weakest = 0;
        for (i, n) in self.list.iter().enumerate() {
            if n.weight < self.list[weakest].weight {
                weakest = i;
            }
        }
        let inherited = self.list[weakest].weight;
        self.list[weakest] = Neighbor {
            item: other,
            weight: inherited + w,
        };
        // Keep the list within bounds even if `max` was lowered by CONFIG SET.
        self.shrink_to(max);
    }

    /// Drops the weakest entries until at most `max` remain.
    pub fn shrink_to(&mut self, max: usize) {
        while self.list.len() > max {
            let mut weakest = 0;
            for (i, n) in self.list.iter().enumerate() {
                if n.weight < self.list[weakest].weight {
                    weakest = i;
                }
            }
            self.list.swap_remove(weakest);
        }
    }

    pub fn remove(&mut self, other: ItemRef) {
        self.list.retain(|n| n.item != other);
    }

    pub fn mem_bytes(&self) -> usize {
        self.list.capacity() * std::mem::size_of::<Neighbor>()
    }

    pub fn save(&self, w: &mut Writer) {
        w.len(self.list.len());
        for n in &self.list {
            w.u32(n.item.idx);
            w.u32(n.item.gen);
            w.f32(n.weight);
        }
    }

    pub fn load(r: &mut Reader) -> DResult<Self> {
        let n = r.len(12)?;
        let mut list = Vec::with_capacity(n);
        for _ in 0..n {
            list.push(Neighbor {
                item: ItemRef {
                    idx: r.u32()?,
                    gen: r.u32()?,
                },
                weight: r.f32()?,
            });
        }
        Ok(Neighbors { list })
    }
}

/// Normalized similarity: pairs of merely popular items do not dominate.
pub fn similarity(cooc: f32, mass_a: f64, mass_b: f64) -> f64 {
    let denom = (mass_a.max(1e-9) * mass_b.max(1e-9)).sqrt();
    f64::from(cooc) / denom
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(i: u32) -> ItemRef {
        ItemRef { idx: i, gen: 0 }
    }

    #[test]
    fn bounded_with_space_saving() {
        let mut n = Neighbors::default();
        for i in 0..3 {
            n.add(r(i), 1.0 + i as f32, 3, |_| true);
        }
        n.add(r(0), 5.0, 3, |_| true);
        assert_eq!(n.list.len(), 3);
        // r(1) (weight 2) is the weakest and gives way to r(9), which inherits 2.
        n.add(r(9), 0.5, 3, |_| true);
        assert_eq!(n.list.len(), 3);
        assert!(n.list.iter().all(|x| x.item != r(1)));
        let nine = n.list.iter().find(|x| x.item == r(9)).unwrap();
        assert_eq!(nine.weight, 2.5);
    }

    #[test]
    fn stale_entries_are_pruned_first() {
        let mut n = Neighbors::default();
        n.add(r(0), 10.0, 2, |_| true);
        n.add(r(1), 10.0, 2, |_| true);
        n.add(r(2), 1.0, 2, |x| x != r(0));
        assert_eq!(n.list.len(), 2);
        assert!(n.list.iter().any(|x| x.item == r(2) && x.weight == 1.0));
    }

    #[test]
    fn rejects_non_positive_weights() {
        let mut n = Neighbors::default();
        n.add(r(0), -1.0, 2, |_| true);
        n.add(r(0), f32::NAN, 2, |_| true);
        assert!(n.list.is_empty());
    }

    #[test]
    fn similarity_discounts_popular_items() {
        assert!(similarity(10.0, 10.0, 10.0) > similarity(10.0, 10.0, 1000.0));
    }
}
