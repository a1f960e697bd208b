//! The recommendation engine: plain Rust, no Redis types. The command layer parses arguments,
//! calls one method here and writes the reply.

pub mod abstats;
pub mod actions;
pub mod assign;
pub mod bandit;
pub mod cache;
pub mod catalog;
pub mod codec;
pub mod cooccurrence;
pub mod experiment;
pub mod exposure;
pub mod fasthash;
pub mod model;
pub mod popularity;
pub mod ranking;
pub mod user;

use actions::Action;
use catalog::{Catalog, ItemRef, ItemUpdate};
use codec::{DResult, DecodeError, Reader, Writer};
use cooccurrence::similarity;
use model::{Model, ModelUpdate, Models};
use popularity::PopIndex;
use std::fmt;
use user::{UserEvent, UserLimits, UserState};

const STATE_VERSION: u8 = 1;

/// The bounds and knobs the engine works with, read from the configs on each call.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub history_size: usize,
    pub cooc_window: usize,
    pub neighbors: usize,
    pub popularity_half_life_ms: f64,
    pub affinity_half_life_ms: f64,
    pub max_items: usize,
    pub max_excluded: usize,
    pub user_categories: usize,
    pub max_scan: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            history_size: 100,
            cooc_window: 20,
            neighbors: 100,
            popularity_half_life_ms: 86_400_000.0,
            affinity_half_life_ms: 604_800_000.0,
            max_items: 1_000_000,
            max_excluded: 500,
            user_categories: 32,
            max_scan: 5000,
        }
    }
}

impl Settings {
    fn user_limits(&self) -> UserLimits {
        UserLimits {
            history: self.history_size,
            categories: self.user_categories,
            excluded: self.max_excluded,
            affinity_half_life_ms: self.affinity_half_life_ms,
        }
    }
}

/// Errors the engine reports; the shell turns them into `ERR ...` replies.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    CatalogFull(usize),
    BadValue(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::CatalogFull(n) => write!(
                f,
                "catalog is full ({n} items) — expected fewer items, or a larger rec.max-items"
            ),
            EngineError::BadValue(s) => f.write_str(s),
        }
    }
}

/// One event to record.
pub struct TrackInput<'a> {
    pub item: &'a [u8],
    pub action: &'a Action,
    pub value: Option<f64>,
    pub ts: i64,
}

/// Node-wide state: catalog (with popularity and co-occurrence per item), popularity indexes,
/// models and counters. Persisted as module aux data.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Engine {
    pub catalog: Catalog,
    pub pop: PopIndex,
    pub models: Models,
    /// User states created by events since the state began.
    pub users_seen: u64,
    /// Last stamp handed out; items and models record the stamp of their last change.
    pub stamp: u64,
    /// Bumped by REC.INVALIDATE ALL: every cached list from an older epoch is stale.
    pub cache_epoch: u64,
    pub experiments: experiment::Experiments,
}

/// Memory estimate per structure, in bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemReport {
    pub catalog: usize,
    pub cooccurrence: usize,
    pub popularity: usize,
    pub models: usize,
}

impl Engine {
    pub fn item_set(
        &mut self,
        id: &[u8],
        up: ItemUpdate,
        s: &Settings,
    ) -> Result<bool, EngineError> {
        if self.catalog.lookup(id).is_none() && self.catalog.len() >= s.max_items {
            return Err(EngineError::CatalogFull(s.max_items));
        }
        let before = self
            .catalog
            .get_by_id(id)
            .map(|it| (it.pop, it.category, it.available));
        let out = self
            .catalog
            .set(id, up, s.max_items)
            .ok_or(EngineError::CatalogFull(s.max_items))?;
        let stamp = self.next_stamp();
        if let Some(it) = self.catalog.get_mut(out.item) {
            it.stamp = stamp;
            // A list computed while the item was unavailable may be missing it now.
            if !out.created && !out.was_available && it.available {
                self.cache_epoch += 1;
            }
        }
        if let Some((pop, cat, avail)) = before {
            if avail {
                self.pop.remove(out.item, pop, cat);
            }
        }
        if let Some(it) = self.catalog.get(out.item) {
            if it.available {
                self.pop.insert(out.item, it.pop, it.category);
            }
        }
        Ok(out.created)
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// REC.INVALIDATE ITEM: lists holding the item are never served again.
    pub fn invalidate_item(&mut self, id: &[u8]) -> bool {
        let Some(r) = self.catalog.lookup(id) else {
            return false;
        };
        let stamp = self.next_stamp();
        if let Some(it) = self.catalog.get_mut(r) {
            it.stamp = stamp;
        }
        true
    }

    /// REC.INVALIDATE ALL: no list cached before now is served again.
    pub fn invalidate_all(&mut self) {
        self.cache_epoch += 1;
    }

    pub fn item_del(&mut self, id: &[u8]) -> bool {
        let Some((r, item)) = self.catalog.remove(id) else {
            return false;
        };
        if item.available {
            self.pop.remove(r, item.pop, item.category);
        }
        for n in &item.neighbors.list {
            if let Some(other) = self.catalog.get_mut(n.item) {
                other.neighbors.remove(r);
            }
        }
        true
    }

    /// Records one event for `user`. Validates everything before changing anything.
    /// Returns whether the item was created bare.
    pub fn track(
        &mut self,
        user: &mut UserState,
        ev: &TrackInput,
        s: &Settings,
    ) -> Result<bool, EngineError> {
        let weight = ev
            .action
            .event_weight(ev.value)
            .map_err(EngineError::BadValue)?;
        let (iref, created) = self
            .catalog
            .ensure(ev.item, s.max_items)
            .ok_or(EngineError::CatalogFull(s.max_items))?;
        if created {
            let stamp = self.next_stamp();
            if let Some(it) = self.catalog.get_mut(iref) {
                it.stamp = stamp;
            }
        }

        // Popularity (global and per category), decayed through the anchor.
        let hl = s.popularity_half_life_ms;
        let factor = match self.pop.factor(ev.ts, hl) {
            Some(f) => f,
            None => {
                self.rebase_popularity(ev.ts, hl);
                1.0
            }
        };
        self.pop.clock_ms = self.pop.clock_ms.max(ev.ts);
        let Some(item) = self.catalog.get_mut(iref) else {
            return Ok(created);
        };
        let old = item.pop;
        let new = (old + weight * factor).max(0.0);
        item.events += 1;
        if weight > 0.0 {
            item.mass += weight;
        }
        let (cat, avail) = (item.category, item.available);
        item.pop = new;
        if avail {
            self.pop.remove(iref, old, cat);
            self.pop.insert(iref, new, cat);
        }

        // Co-occurrence with the user's recent distinct items (positive events only).
        if weight > 0.0 {
            self.pair_with_recent(user, iref, ev.item, weight, s);
        }

        let category = cat.map(|c| self.catalog.category_name(c).to_vec());
        user.record(
            &UserEvent {
                item: ev.item,
                action: ev.action.name.as_bytes(),
                weight,
                ts: ev.ts,
                category: category.as_deref(),
                purchase: ev.action.kind == actions::ActionKind::Purchase,
                dislike: ev.action.dislikes(ev.value),
            },
            s.user_limits(),
        );
        Ok(created)
    }

    fn pair_with_recent(
        &mut self,
        user: &UserState,
        iref: ItemRef,
        item_id: &[u8],
        weight: f64,
        s: &Settings,
    ) {
        let mut recent: Vec<(&[u8], f64)> = Vec::new();
        let mut keys: Vec<u64> = Vec::with_capacity(s.cooc_window);
        let own = user::item_key(item_id);
        for e in user.history.iter().rev() {
            if recent.len() >= s.cooc_window {
                break;
            }
            if (e.key == own && &*e.item == item_id)
                || keys
                    .iter()
                    .zip(&recent)
                    .any(|(k, (id, _))| *k == e.key && *id == &*e.item)
            {
                continue;
            }
            keys.push(e.key);
            recent.push((&e.item, f64::from(e.weight)));
        }
        let mut mine = match self.catalog.get_mut(iref) {
            Some(it) => std::mem::take(&mut it.neighbors),
            None => return,
        };
        for (k, (jid, wj)) in recent.iter().enumerate() {
            if *wj <= 0.0 {
                continue;
            }
            let Some(jref) = self.catalog.lookup(jid) else {
                continue;
            };
            let pw = ((weight * wj).sqrt() / (1.0 + k as f64)) as f32;
            mine.add(jref, pw, s.neighbors);
            let mut theirs = match self.catalog.get_mut(jref) {
                Some(j) => std::mem::take(&mut j.neighbors),
                None => continue,
            };
            theirs.add(iref, pw, s.neighbors);
            if let Some(j) = self.catalog.get_mut(jref) {
                j.neighbors = theirs;
            }
        }
        if let Some(it) = self.catalog.get_mut(iref) {
            it.neighbors = mine;
        }
    }

    /// Moves the popularity anchor to `ts`, rescaling every stored score.
    fn rebase_popularity(&mut self, ts: i64, hl: f64) {
        let f = self.pop.rebase_factor(ts, hl);
        for it in self.catalog.iter_mut() {
            it.pop *= f;
            if !it.pop.is_normal() {
                it.pop = 0.0;
            }
        }
        self.pop.anchor_ms = ts;
        self.rebuild_pop_index();
    }

    fn rebuild_pop_index(&mut self) {
        self.pop.clear_sets();
        let entries: Vec<(ItemRef, f64, Option<u32>)> = self
            .catalog
            .iter()
            .filter(|(_, it)| it.available)
            .map(|(r, it)| (r, it.pop, it.category))
            .collect();
        for (r, p, c) in entries {
            self.pop.insert(r, p, c);
        }
    }

    /// The displayed (decayed) popularity of an item.
    pub fn popularity_of(&self, stored: f64, s: &Settings) -> f64 {
        self.pop.display(stored, s.popularity_half_life_ms)
    }

    /// Trending items, optionally in one category: (id, decayed score), best first.
    pub fn popular(
        &self,
        count: usize,
        category: Option<&[u8]>,
        s: &Settings,
    ) -> Vec<(Vec<u8>, f64)> {
        let cat = match category {
            Some(c) => match self.catalog.categories.lookup(c) {
                Some(id) => Some(id),
                None => return Vec::new(),
            },
            None => None,
        };
        let mut out: Vec<(Vec<u8>, f64)> = Vec::with_capacity(count);
        for r in self.pop.iter(cat).take(count) {
            if let Some(it) = self.catalog.get(r) {
                out.push((it.id.to_vec(), it.pop));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.into_iter()
            .map(|(id, p)| (id, self.popularity_of(p, s)))
            .collect()
    }

    /// Items most often used together with `id`: (id, normalized similarity), best first.
    pub fn similar(&self, id: &[u8], count: usize) -> Vec<(Vec<u8>, f64)> {
        let Some(item) = self.catalog.get_by_id(id) else {
            return Vec::new();
        };
        let mut out: Vec<(Vec<u8>, f64)> = item
            .neighbors
            .list
            .iter()
            .filter_map(|n| {
                let j = self.catalog.get(n.item)?;
                j.available
                    .then(|| (j.id.to_vec(), similarity(n.weight, item.mass, j.mass)))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(count);
        out
    }

    pub fn model_set(&mut self, name: &str, up: ModelUpdate) -> bool {
        let stamp = self.next_stamp();
        self.models.set(name, up, stamp)
    }

    pub fn model(&self, name: &str) -> Option<Model> {
        self.models.get(name).copied()
    }

    pub fn mem_report(&self) -> MemReport {
        let (catalog, cooccurrence) = self.catalog.mem_bytes();
        MemReport {
            catalog,
            cooccurrence,
            popularity: self.pop.mem_bytes(),
            models: self.models.mem_bytes(),
        }
    }

    pub fn save(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(STATE_VERSION);
        self.catalog.save(&mut w);
        self.pop.save(&mut w);
        self.models.save(&mut w);
        w.u64(self.users_seen);
        w.u64(self.stamp);
        w.u64(self.cache_epoch);
        self.experiments.save(&mut w);
        w.buf
    }

    pub fn load(buf: &[u8]) -> DResult<Self> {
        let mut r = Reader::new(buf);
        if r.u8()? != STATE_VERSION {
            return Err(DecodeError("unknown state encoding version"));
        }
        let catalog = Catalog::load(&mut r)?;
        let pop = PopIndex::load(&mut r)?;
        let models = Models::load(&mut r)?;
        let users_seen = r.u64()?;
        let stamp = r.u64()?;
        let cache_epoch = r.u64()?;
        let experiments = experiment::Experiments::load(&mut r)?;
        r.finish()?;
        let mut e = Engine {
            catalog,
            pop,
            models,
            users_seen,
            stamp,
            cache_epoch,
            experiments,
        };
        e.rebuild_pop_index();
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::actions::ActionTable;
    use super::*;

    pub(crate) fn shop() -> (Engine, ActionTable, Settings) {
        (
            Engine::default(),
            ActionTable::default(),
            Settings::default(),
        )
    }

    pub(crate) fn track(
        e: &mut Engine,
        u: &mut UserState,
        t: &ActionTable,
        item: &str,
        action: &str,
        ts: i64,
    ) {
        let s = Settings::default();
        let a = t.find(action.as_bytes()).unwrap();
        e.track(
            u,
            &TrackInput {
                item: item.as_bytes(),
                action: a,
                value: None,
                ts,
            },
            &s,
        )
        .unwrap();
    }

    #[test]
    fn events_create_bare_items_and_learn_pairs() {
        let (mut e, t, s) = shop();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "a", "purchase", 1_000);
        track(&mut e, &mut u, &t, "b", "purchase", 2_000);
        assert_eq!(e.catalog.len(), 2);
        assert!(e.catalog.get_by_id(b"a").unwrap().category.is_none());
        let sim = e.similar(b"a", 10);
        assert_eq!(sim.len(), 1);
        assert_eq!(sim[0].0, b"b");
        let pop = e.popular(10, None, &s);
        assert_eq!(pop.len(), 2);
        assert_eq!(pop[0].0, b"b", "later event decays less");
    }

    #[test]
    fn delete_unlinks_everywhere() {
        let (mut e, t, s) = shop();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "a", "view", 1);
        track(&mut e, &mut u, &t, "b", "view", 2);
        assert!(e.item_del(b"b"));
        assert!(!e.item_del(b"b"));
        assert!(e.similar(b"a", 10).is_empty());
        assert_eq!(e.popular(10, None, &s).len(), 1);
        // A new item in the reused slot does not inherit b's pairs.
        e.item_set(b"c", ItemUpdate::default(), &s).unwrap();
        assert!(e.similar(b"a", 10).is_empty());
    }

    #[test]
    fn unavailable_items_leave_the_index() {
        let (mut e, t, s) = shop();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "a", "view", 1);
        let off = ItemUpdate {
            available: Some(false),
            ..Default::default()
        };
        e.item_set(b"a", off, &s).unwrap();
        assert!(e.popular(10, None, &s).is_empty());
        let on = ItemUpdate {
            available: Some(true),
            ..Default::default()
        };
        e.item_set(b"a", on, &s).unwrap();
        assert_eq!(e.popular(10, None, &s).len(), 1);
    }

    #[test]
    fn catalog_bound_is_an_error_that_changes_nothing() {
        let (mut e, t, _) = shop();
        let s = Settings {
            max_items: 1,
            ..Default::default()
        };
        let mut u = UserState::default();
        let a = t.find(b"view").unwrap();
        let ev = |item: &'static str| TrackInput {
            item: item.as_bytes(),
            action: a,
            value: None,
            ts: 5,
        };
        e.track(&mut u, &ev("a"), &s).unwrap();
        let before = (e.clone(), u.clone());
        assert!(e.track(&mut u, &ev("b"), &s).is_err());
        assert_eq!((e, u), before);
    }

    #[test]
    fn rebase_keeps_order_and_far_past_events_are_fine() {
        let (mut e, t, s) = shop();
        let mut u = UserState::default();
        let day = 86_400_000;
        track(&mut e, &mut u, &t, "old", "purchase", 0);
        track(&mut e, &mut u, &t, "new", "view", 100 * day);
        track(&mut e, &mut u, &t, "ancient", "view", -1000 * day);
        let pop = e.popular(10, None, &s);
        assert_eq!(pop[0].0, b"new");
        assert!(pop.iter().all(|(_, p)| p.is_finite()));
    }

    #[test]
    fn save_load_round_trip_is_exact() {
        let (mut e, t, s) = shop();
        let mut u = UserState::default();
        for i in 0..50 {
            let item = format!("i{}", i % 7);
            track(
                &mut e,
                &mut u,
                &t,
                &item,
                if i % 3 == 0 { "purchase" } else { "view" },
                i,
            );
        }
        let up = ItemUpdate {
            category: Some(Some(b"c".to_vec())),
            ..Default::default()
        };
        e.item_set(b"i1", up, &s).unwrap();
        e.item_del(b"i2");
        let buf = e.save();
        let back = Engine::load(&buf).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.save(), buf);
        for cut in 0..buf.len() {
            assert!(Engine::load(&buf[..cut]).is_err());
        }
        for i in (0..buf.len()).step_by(3) {
            let mut b = buf.clone();
            b[i] = b[i].wrapping_add(0x5B);
            let _ = Engine::load(&b);
        }
    }
}
