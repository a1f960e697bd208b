//! The item catalog: ids (binary-safe) to stable slots, with interned categories and tags.
//!
//! Slots are reused after a delete; each slot carries a generation so that references held
//! elsewhere (co-occurrence lists) can tell a deleted item from a new one in the same slot.

use super::codec::{DResult, DecodeError, Reader, Writer};
use super::cooccurrence::Neighbors;
use std::collections::HashMap;

/// A slot index plus its generation: a reference that goes stale when the item is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemRef {
    pub idx: u32,
    pub gen: u32,
}

/// Interned strings with reference counts; ids are reused once nothing refers to them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Interner {
    names: Vec<Option<(Box<[u8]>, u32)>>,
    index: HashMap<Box<[u8]>, u32>,
    free: Vec<u32>,
}

impl Interner {
    /// The id of `name`, adding it (with a reference) if needed.
    pub fn acquire(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.index.get(name) {
            if let Some(Some((_, rc))) = self.names.get_mut(id as usize) {
                *rc += 1;
            }
            return id;
        }
        let entry = Some((Box::<[u8]>::from(name), 1));
        let id = match self.free.pop() {
            Some(id) => {
                self.names[id as usize] = entry;
                id
            }
            None => {
                self.names.push(entry);
                (self.names.len() - 1) as u32
            }
        };
        self.index.insert(name.into(), id);
        id
    }

    /// Drops one reference; returns true when the name is gone.
    pub fn release(&mut self, id: u32) -> bool {
        let Some(slot) = self.names.get_mut(id as usize) else {
            return false;
        };
        let gone = match slot {
            Some((_, rc)) if *rc > 1 => {
                *rc -= 1;
                false
            }
            Some(_) => true,
            None => false,
        };
        if gone {
            if let Some((name, _)) = slot.take() {
                self.index.remove(&name);
            }
            self.free.push(id);
        }
        gone
    }

    pub fn lookup(&self, name: &[u8]) -> Option<u32> {
        self.index.get(name).copied()
    }

    pub fn name(&self, id: u32) -> &[u8] {
        match self.names.get(id as usize) {
            Some(Some((n, _))) => n,
            _ => b"",
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn mem_bytes(&self) -> usize {
        self.names
            .iter()
            .flatten()
            .map(|(n, _)| 2 * n.len() + 64)
            .sum::<usize>()
            + self.names.capacity() * 24
    }

    fn save(&self, w: &mut Writer) {
        w.len(self.names.len());
        for n in &self.names {
            match n {
                Some((name, rc)) => {
                    w.u8(1);
                    w.bytes(name);
                    w.u32(*rc);
                }
                None => w.u8(0),
            }
        }
        w.len(self.free.len());
        for f in &self.free {
            w.u32(*f);
        }
    }

    fn load(r: &mut Reader) -> DResult<Self> {
        let n = r.len(1)?;
        let mut me = Interner::default();
        for i in 0..n {
            if r.bool()? {
                let name = r.boxed()?;
                let rc = r.u32()?;
                if me.index.insert(name.clone(), i as u32).is_some() {
                    return Err(DecodeError("duplicate interned name"));
                }
                me.names.push(Some((name, rc)));
            } else {
                me.names.push(None);
            }
        }
        let nf = r.len(4)?;
        for _ in 0..nf {
            let f = r.u32()?;
            if !matches!(me.names.get(f as usize), Some(None)) {
                return Err(DecodeError("bad interner free list"));
            }
            me.free.push(f);
        }
        Ok(me)
    }
}

/// One catalog entry. Popularity and co-occurrence live here too, so one lookup serves a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: Box<[u8]>,
    pub category: Option<u32>,
    pub tags: Vec<u32>,
    pub created: i64,
    pub available: bool,
    pub props: Option<Box<[u8]>>,
    /// Events tracked on this item.
    pub events: u64,
    /// Time-decayed popularity, expressed at the popularity anchor time.
    pub pop: f64,
    /// Total positive event weight (the normalizer of co-occurrence).
    pub mass: f64,
    pub neighbors: Neighbors,
    /// The engine stamp of the item's last catalog change (cached lists compare it).
    pub stamp: u64,
}

impl Item {
    fn bare(id: &[u8]) -> Self {
        Item {
            id: id.into(),
            category: None,
            tags: Vec::new(),
            created: 0,
            available: true,
            props: None,
            events: 0,
            pop: 0.0,
            mass: 0.0,
            neighbors: Neighbors::default(),
            stamp: 0,
        }
    }

    pub fn mem_bytes(&self) -> usize {
        std::mem::size_of::<Item>()
            + 2 * self.id.len()
            + 48
            + self.tags.capacity() * 4
            + self.props.as_ref().map_or(0, |p| p.len())
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Slot {
    gen: u32,
    item: Option<Item>,
}

/// What [`Catalog::set`] changed, so the caller can keep the popularity index in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    pub item: ItemRef,
    pub created: bool,
    pub old_category: Option<u32>,
    pub was_available: bool,
}

/// Field updates for [`Catalog::set`]; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ItemUpdate {
    /// `Some(None)` clears the category.
    pub category: Option<Option<Vec<u8>>>,
    pub tags: Option<Vec<Vec<u8>>>,
    pub created: Option<i64>,
    pub available: Option<bool>,
    pub props: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Catalog {
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<Box<[u8]>, u32>,
    pub categories: Interner,
    pub tags: Interner,
    available: usize,
}

impl Catalog {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn available_count(&self) -> usize {
        self.available
    }

    pub fn lookup(&self, id: &[u8]) -> Option<ItemRef> {
        let idx = *self.index.get(id)?;
        let gen = self.slots.get(idx as usize)?.gen;
        Some(ItemRef { idx, gen })
    }

    /// The item a reference points to, if it still exists.
    pub fn get(&self, r: ItemRef) -> Option<&Item> {
        let slot = self.slots.get(r.idx as usize)?;
        if slot.gen == r.gen {
            slot.item.as_ref()
        } else {
            None
        }
    }

    pub fn get_mut(&mut self, r: ItemRef) -> Option<&mut Item> {
        let slot = self.slots.get_mut(r.idx as usize)?;
        if slot.gen == r.gen {
            slot.item.as_mut()
        } else {
            None
        }
    }

    pub fn get_by_id(&self, id: &[u8]) -> Option<&Item> {
        self.get(self.lookup(id)?)
    }

    /// Whether a reference is still live (the slot holds the same item).
    pub fn is_live(&self, r: ItemRef) -> bool {
        self.get(r).is_some()
    }

    /// Creates a bare item (events may name unknown items). `None` when the catalog is full.
    pub fn ensure(&mut self, id: &[u8], max_items: usize) -> Option<(ItemRef, bool)> {
        if let Some(r) = self.lookup(id) {
            return Some((r, false));
        }
        if self.len() >= max_items {
            return None;
        }
        let item = Item::bare(id);
        let idx = match self.free.pop() {
            Some(idx) => {
                let slot = &mut self.slots[idx as usize];
                slot.item = Some(item);
                idx
            }
            None => {
                self.slots.push(Slot {
                    gen: 0,
                    item: Some(item),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id.into(), idx);
        self.available += 1;
        let gen = self.slots[idx as usize].gen;
        Some((ItemRef { idx, gen }, true))
    }

    /// Applies an update (creating the item if needed); `None` when the catalog is full.
    pub fn set(&mut self, id: &[u8], up: ItemUpdate, max_items: usize) -> Option<SetOutcome> {
        let (r, created) = self.ensure(id, max_items)?;
        let new_cat = up
            .category
            .as_ref()
            .map(|c| c.as_deref().map(|c| self.categories.acquire(c)));
        let new_tags: Option<Vec<u32>> = up.tags.as_ref().map(|ts| {
            let mut ids: Vec<u32> = Vec::with_capacity(ts.len());
            for t in ts {
                let id = self.tags.acquire(t);
                if ids.contains(&id) {
                    self.tags.release(id);
                } else {
                    ids.push(id);
                }
            }
            ids
        });
        let slot = &mut self.slots[r.idx as usize];
        let item = slot.item.as_mut()?;
        let old_category = item.category;
        let was_available = item.available;
        let mut release_cat = None;
        let mut release_tags = Vec::new();
        if let Some(c) = new_cat {
            release_cat = item.category;
            item.category = c;
        }
        if let Some(t) = new_tags {
            release_tags = std::mem::replace(&mut item.tags, t);
        }
        if let Some(c) = up.created {
            item.created = c;
        }
        if let Some(p) = up.props {
            item.props = Some(p.into());
        }
        if let Some(a) = up.available {
            item.available = a;
        }
        let now_available = item.available;
        if let Some(c) = release_cat {
            self.categories.release(c);
        }
        for t in release_tags {
            self.tags.release(t);
        }
        match (was_available, now_available) {
            (true, false) => self.available -= 1,
            (false, true) => self.available += 1,
            _ => {}
        }
        Some(SetOutcome {
            item: r,
            created,
            old_category,
            was_available,
        })
    }

    /// Removes an item; returns it so the caller can unlink it from indexes.
    pub fn remove(&mut self, id: &[u8]) -> Option<(ItemRef, Item)> {
        let idx = self.index.remove(id)?;
        let slot = self.slots.get_mut(idx as usize)?;
        let r = ItemRef { idx, gen: slot.gen };
        let item = slot.item.take()?;
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(idx);
        if item.available {
            self.available -= 1;
        }
        if let Some(c) = item.category {
            self.categories.release(c);
        }
        for &t in &item.tags {
            self.tags.release(t);
        }
        Some((r, item))
    }

    /// All live items with their references, in slot order (deterministic).
    pub fn iter(&self) -> impl Iterator<Item = (ItemRef, &Item)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.item.as_ref().map(|it| {
                (
                    ItemRef {
                        idx: i as u32,
                        gen: s.gen,
                    },
                    it,
                )
            })
        })
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Item> {
        self.slots.iter_mut().filter_map(|s| s.item.as_mut())
    }

    pub fn category_name(&self, id: u32) -> &[u8] {
        self.categories.name(id)
    }

    /// (catalog bytes without neighbour lists, neighbour-list bytes).
    pub fn mem_bytes(&self) -> (usize, usize) {
        let mut items = self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.categories.mem_bytes()
            + self.tags.mem_bytes()
            + self.index.capacity() * 24;
        let mut cooc = 0;
        for (_, it) in self.iter() {
            items += it.mem_bytes() - std::mem::size_of::<Item>();
            cooc += it.neighbors.mem_bytes();
        }
        (items, cooc)
    }

    pub fn save(&self, w: &mut Writer) {
        w.len(self.slots.len());
        for s in &self.slots {
            w.u32(s.gen);
            match &s.item {
                None => w.u8(0),
                Some(it) => {
                    w.u8(1);
                    w.bytes(&it.id);
                    match it.category {
                        Some(c) => {
                            w.u8(1);
                            w.u32(c);
                        }
                        None => w.u8(0),
                    }
                    w.len(it.tags.len());
                    for t in &it.tags {
                        w.u32(*t);
                    }
                    w.i64(it.created);
                    w.bool(it.available);
                    w.opt_bytes(it.props.as_deref());
                    w.u64(it.events);
                    w.f64(it.pop);
                    w.f64(it.mass);
                    it.neighbors.save(w);
                    w.u64(it.stamp);
                }
            }
        }
        w.len(self.free.len());
        for f in &self.free {
            w.u32(*f);
        }
        self.categories.save(w);
        self.tags.save(w);
    }

    pub fn load(r: &mut Reader) -> DResult<Self> {
        let n = r.len(5)?;
        let mut me = Catalog::default();
        for i in 0..n {
            let gen = r.u32()?;
            let item = if r.bool()? {
                let id = r.boxed()?;
                let category = if r.bool()? { Some(r.u32()?) } else { None };
                let nt = r.len(4)?;
                let mut tags = Vec::with_capacity(nt);
                for _ in 0..nt {
                    tags.push(r.u32()?);
                }
                let item = Item {
                    id,
                    category,
                    tags,
                    created: r.i64()?,
                    available: r.bool()?,
                    props: r.opt_boxed()?,
                    events: r.u64()?,
                    pop: r.f64()?,
                    mass: r.f64()?,
                    neighbors: Neighbors::load(r)?,
                    stamp: r.u64()?,
                };
                if me.index.insert(item.id.clone(), i as u32).is_some() {
                    return Err(DecodeError("duplicate item id"));
                }
                if item.available {
                    me.available += 1;
                }
                Some(item)
            } else {
                None
            };
            me.slots.push(Slot { gen, item });
        }
        let nf = r.len(4)?;
        for _ in 0..nf {
            let f = r.u32()?;
            match me.slots.get(f as usize) {
                Some(Slot { item: None, .. }) => me.free.push(f),
                _ => return Err(DecodeError("bad catalog free list")),
            }
        }
        me.categories = Interner::load(r)?;
        me.tags = Interner::load(r)?;
        for (_, it) in me.iter() {
            if it
                .category
                .is_some_and(|c| me.categories.name(c).is_empty())
                || it.tags.iter().any(|&t| me.tags.name(t).is_empty())
            {
                return Err(DecodeError("item refers to an unknown category or tag"));
            }
        }
        Ok(me)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cat(c: &str) -> ItemUpdate {
        ItemUpdate {
            category: Some(Some(c.as_bytes().to_vec())),
            ..Default::default()
        }
    }

    #[test]
    fn set_get_delete_and_slot_reuse() {
        let mut c = Catalog::default();
        let a = c.set(b"a", cat("shoes"), 10).unwrap();
        assert!(a.created);
        assert_eq!(c.len(), 1);
        let again = c.set(b"a", ItemUpdate::default(), 10).unwrap();
        assert!(!again.created);
        assert_eq!(c.categories.len(), 1);
        let (r, _) = c.remove(b"a").unwrap();
        assert!(!c.is_live(r));
        assert_eq!(
            c.categories.len(),
            0,
            "category released with its last item"
        );
        let (b, created) = c.ensure(b"b", 10).unwrap();
        assert!(created);
        assert_eq!(b.idx, r.idx, "slot reused");
        assert_ne!(b.gen, r.gen, "with a new generation");
        assert!(c.get(r).is_none());
    }

    #[test]
    fn capacity_and_availability() {
        let mut c = Catalog::default();
        assert!(c.ensure(b"a", 1).is_some());
        assert!(c.ensure(b"b", 1).is_none());
        let up = ItemUpdate {
            available: Some(false),
            ..Default::default()
        };
        c.set(b"a", up, 1).unwrap();
        assert_eq!(c.available_count(), 0);
    }

    #[test]
    fn tags_dedup_and_round_trip() {
        let mut c = Catalog::default();
        let up = ItemUpdate {
            tags: Some(vec![b"x".to_vec(), b"y".to_vec(), b"x".to_vec()]),
            props: Some(b"{}".to_vec()),
            ..cat("k")
        };
        c.set(b"\x00id", up, 10).unwrap();
        c.ensure(b"gone", 10).unwrap();
        c.remove(b"gone").unwrap();
        assert_eq!(c.get_by_id(b"\x00id").unwrap().tags.len(), 2);
        let mut w = Writer::new();
        c.save(&mut w);
        let mut r = Reader::new(&w.buf);
        let back = Catalog::load(&mut r).unwrap();
        assert_eq!(back, c);
        for cut in 0..w.buf.len() {
            assert!(Catalog::load(&mut Reader::new(&w.buf[..cut])).is_err() || cut == w.buf.len());
        }
    }
}
