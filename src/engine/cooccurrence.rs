//! Item-to-item co-occurrence, learned online and bounded per item.
//!
//! Each item keeps at most `rec.neighbors` neighbours. When a list is full, a new neighbour
//! replaces the weakest one and inherits its weight (the Space-Saving rule), so items that keep
//! co-occurring climb in, and heavy pairs are never lost to a stream of one-off pairs.
//! Entries for deleted items are skipped on read and, their weight frozen, become the weakest
//! and give way in time; they are not searched for on every insert (that cost the hot path).

use super::catalog::ItemRef;
use super::codec::{DResult, Reader, Writer};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub item: ItemRef,
    pub weight: f32,
}

/// Kept in descending order of weight (ties keep their order), so the weakest entry is the
/// last one and the strongest neighbours are a prefix.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Neighbors {
    pub list: Vec<Neighbor>,
}

impl Neighbors {
    /// Adds `w` to the pair (self, `other`).
    pub fn add(&mut self, other: ItemRef, w: f32, max: usize) {
        if max == 0 || !(w.is_finite() && w > 0.0) {
            return;
        }
        let at = match self.list.iter().position(|n| n.item == other) {
            Some(i) => {
                self.list[i].weight += w;
                i
            }
            None if self.list.len() < max => {
                self.list.push(Neighbor {
                    item: other,
                    weight: w,
                });
                self.list.len() - 1
            }
            None => {
                // Full: the weakest (last) entry gives way and its weight is inherited.
                let last = self.list.len() - 1;
                let inherited = self.list[last].weight;
                self.list[last] = Neighbor {
                    item: other,
                    weight: inherited + w,
                };
                last
            }
        };
        self.bubble_up(at);
        // Keep the list within bounds even if `max` was lowered by CONFIG SET.
        self.list.truncate(max);
    }

    /// Restores the order after the weight at `i` grew.
    fn bubble_up(&mut self, mut i: usize) {
        while i > 0 && self.list[i - 1].weight < self.list[i].weight {
            self.list.swap(i - 1, i);
            i -= 1;
        }
    }

    /// The `n` strongest entries.
    pub fn strongest(&self, n: usize) -> &[Neighbor] {
        &self.list[..n.min(self.list.len())]
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
        let mut list: Vec<Neighbor> = Vec::with_capacity(n);
        for _ in 0..n {
            let nb = Neighbor {
                item: ItemRef {
                    idx: r.u32()?,
                    gen: r.u32()?,
                },
                weight: r.f32()?,
            };
            if list.last().is_some_and(|p| p.weight < nb.weight) {
                return Err(super::codec::DecodeError("neighbours out of order"));
            }
            list.push(nb);
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
            n.add(r(i), 1.0 + i as f32, 3);
        }
        n.add(r(0), 5.0, 3);
        assert_eq!(n.list.len(), 3);
        let order: Vec<u32> = n.list.iter().map(|x| x.item.idx).collect();
        assert_eq!(order, vec![0, 2, 1], "kept strongest first");
        // r(1) (weight 2) is the weakest and gives way to r(9), which inherits 2.
        n.add(r(9), 0.5, 3);
        assert_eq!(n.list.len(), 3);
        assert!(n.list.iter().all(|x| x.item != r(1)));
        let nine = n.list.iter().find(|x| x.item == r(9)).unwrap();
        assert_eq!(nine.weight, 2.5);
        assert!(n.list.windows(2).all(|w| w[0].weight >= w[1].weight));
        assert_eq!(n.strongest(1)[0].item, r(0));
    }

    #[test]
    fn rejects_non_positive_weights() {
        let mut n = Neighbors::default();
        n.add(r(0), -1.0, 2);
        n.add(r(0), f32::NAN, 2);
        assert!(n.list.is_empty());
    }

    #[test]
    fn similarity_discounts_popular_items() {
        assert!(similarity(10.0, 10.0, 10.0) > similarity(10.0, 10.0, 1000.0));
    }
}
