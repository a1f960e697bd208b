//! REC.GET: candidates from the neighbours of the user's recent items and from popularity,
//! scored by a model's blend, filtered, diversified and explained.

use super::actions::Action;
use super::catalog::{Item, ItemRef};
use super::cooccurrence::similarity;
use super::fasthash::{SlotMap, SlotSet};
use super::model::{Model, POPULAR_MODEL};
use super::user::UserState;
use super::{Engine, Settings};

/// How many of the user's strongest categories feed candidates.
const TOP_CATEGORIES: usize = 3;
/// Seeds (the user's strongest recent items) that feed candidates.
const MAX_SEEDS: usize = 10;
/// Neighbours taken from each seed (its strongest).
const NEIGHBORS_PER_SEED: usize = 30;

/// One recommendation request, validated by the caller.
#[derive(Debug, Clone)]
pub struct RecRequest<'a> {
    pub count: usize,
    pub model_name: &'a str,
    pub model: Model,
    pub category: Option<&'a [u8]>,
    pub exclude: &'a [&'a [u8]],
    /// 0 = no limit.
    pub max_per_category: usize,
}

/// Why an item was recommended.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// because you <action> <item>
    Because {
        action: Vec<u8>,
        item: Vec<u8>,
    },
    PopularIn(Vec<u8>),
    Trending,
}

impl Reason {
    pub fn render(&self) -> Vec<u8> {
        match self {
            Reason::Because { action, item } => {
                let mut s = b"because you ".to_vec();
                s.extend_from_slice(Action::past_tense(action));
                s.push(b' ');
                s.extend_from_slice(item);
                s
            }
            Reason::PopularIn(c) => {
                let mut s = b"popular in ".to_vec();
                s.extend_from_slice(c);
                s
            }
            Reason::Trending => b"trending".to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    pub id: Vec<u8>,
    pub score: f64,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecList {
    pub items: Vec<Recommendation>,
    /// The model that actually scored the list (`popular` on fallback).
    pub model: String,
}

struct Seed<'a> {
    item: &'a [u8],
    key: u64,
    weight: f64,
    /// The action of the event that contributed most, for the reason.
    action: u8,
    best: f64,
}

#[derive(Default)]
struct Candidate {
    r: Option<ItemRef>,
    cooc: f64,
    best_contrib: f64,
    best_seed: usize,
}

impl Engine {
    pub fn recommend(&self, user: Option<&UserState>, req: &RecRequest, s: &Settings) -> RecList {
        let empty = RecList {
            items: Vec::new(),
            model: req.model_name.to_string(),
        };
        let cat_filter = match req.category {
            Some(c) => match self.catalog.categories.lookup(c) {
                Some(id) => Some(id),
                None => return empty,
            },
            None => None,
        };
        let mut excluded = SlotSet::default();
        let mut exclude_id = |id: &[u8]| {
            if let Some(r) = self.catalog.lookup(id) {
                excluded.insert(r.idx);
            }
        };
        for id in req.exclude {
            exclude_id(id);
        }
        if let Some(u) = user {
            for id in u.purchased.iter().chain(u.disliked.iter()) {
                exclude_id(id);
            }
        }
        // The item behind a reference, if it may be recommended at all.
        let eligible_item = |r: ItemRef| -> Option<&Item> {
            let it = self.catalog.get(r)?;
            (it.available
                && !excluded.contains(&r.idx)
                && (cat_filter.is_none() || it.category == cat_filter))
                .then_some(it)
        };
        let eligible = |r: ItemRef| eligible_item(r).is_some();

        let m = req.model;
        let mut seeds = match user {
            Some(u) if m.cooc > 0.0 => collect_seeds(u, m, s.cooc_window),
            _ => Vec::new(),
        };
        // The strongest seeds and, for each, its strongest neighbours bound the work per request.
        seeds.sort_by(|a, b| b.weight.total_cmp(&a.weight));
        seeds.truncate(MAX_SEEDS);

        // Candidates from co-occurrence.
        let mut cands: SlotMap<Candidate> = SlotMap::default();
        for (si, seed) in seeds.iter().enumerate() {
            let Some(item) = self.catalog.get_by_id(seed.item) else {
                continue;
            };
            for n in item.neighbors.strongest(NEIGHBORS_PER_SEED) {
                let Some(j) = eligible_item(n.item) else {
                    continue;
                };
                let contrib = seed.weight * similarity(n.weight, item.mass, j.mass);
                let c = cands.entry(n.item.idx).or_default();
                c.r = Some(n.item);
                c.cooc += contrib;
                if contrib > c.best_contrib {
                    c.best_contrib = contrib;
                    c.best_seed = si;
                }
            }
        }

        // Category affinities (positive only), and candidates from the strongest categories.
        let mut affinity: SlotMap<f64> = SlotMap::default();
        if let Some(u) = user {
            if m.affinity > 0.0 {
                for (name, a) in u.top_categories() {
                    if a <= 0.0 {
                        break;
                    }
                    if let Some(c) = self.catalog.categories.lookup(name) {
                        affinity.insert(c, a);
                    }
                }
            }
        }
        let mut top_cats: Vec<(u32, f64)> = affinity.iter().map(|(c, a)| (*c, *a)).collect();
        top_cats.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut budget = s.max_scan;
        for (c, _) in top_cats.iter().take(TOP_CATEGORIES) {
            if cat_filter.is_some_and(|f| f != *c) {
                continue;
            }
            self.pool_from(Some(*c), req.count, &mut budget, &eligible, &mut cands);
        }
        self.pool_from(cat_filter, req.count, &mut budget, &eligible, &mut cands);

        // Score. Reasons are built only for the items that make the list.
        let max_cooc = cands.values().map(|c| c.cooc).fold(0.0, f64::max);
        let max_aff = affinity.values().copied().fold(0.0, f64::max);
        let max_pop = self
            .pop
            .iter(None)
            .next()
            .and_then(|r| self.catalog.get(r))
            .map_or(0.0, |it| it.pop);
        let score_of = |it: &Item, cooc: f64| -> (f64, bool) {
            let cooc_n = if max_cooc > 0.0 { cooc / max_cooc } else { 0.0 };
            let aff = it
                .category
                .and_then(|c| affinity.get(&c))
                .copied()
                .unwrap_or(0.0);
            let aff_n = if max_aff > 0.0 { aff / max_aff } else { 0.0 };
            let pop_n = if max_pop > 0.0 { it.pop / max_pop } else { 0.0 };
            let score = m.cooc * cooc_n + m.affinity * aff_n + m.popularity * pop_n;
            (score, m.affinity > 0.0 && aff_n > 0.0)
        };
        let reason_of = |it: &Item, cooc: f64, best_seed: usize, by_affinity: bool| match seeds
            .get(best_seed)
        {
            Some(seed) if m.cooc > 0.0 && cooc > 0.0 => Reason::Because {
                action: user
                    .map_or(&b""[..], |u| u.action_name(seed.action))
                    .to_vec(),
                item: seed.item.to_vec(),
            },
            _ if by_affinity => Reason::PopularIn(
                it.category
                    .map_or(&b""[..], |c| self.catalog.category_name(c))
                    .to_vec(),
            ),
            _ => Reason::Trending,
        };
        struct Scored<'e> {
            score: f64,
            item: &'e Item,
            r: ItemRef,
            cooc: f64,
            best_seed: usize,
            by_affinity: bool,
        }
        let mut scored: Vec<Scored> = Vec::with_capacity(cands.len());
        for c in cands.values() {
            let Some(r) = c.r else { continue };
            let Some(it) = self.catalog.get(r) else {
                continue;
            };
            let (score, by_affinity) = score_of(it, c.cooc);
            scored.push(Scored {
                score,
                item: it,
                r,
                cooc: c.cooc,
                best_seed: c.best_seed,
                by_affinity,
            });
        }
        let order = |a: &Scored, b: &Scored| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| b.item.pop.total_cmp(&a.item.pop))
                .then_with(|| a.item.id.cmp(&b.item.id))
        };
        scored.sort_unstable_by(order);

        // Diversify: at most max_per_category items of one category.
        let mut per_cat: SlotMap<usize> = SlotMap::default();
        let mut chosen = SlotSet::default();
        let mut out: Vec<Recommendation> = Vec::with_capacity(req.count);
        let mut admit = |r: ItemRef, it: &Item, per_cat: &mut SlotMap<usize>| -> bool {
            if chosen.contains(&r.idx) {
                return false;
            }
            if let Some(c) = it.category {
                if req.max_per_category > 0 {
                    let n = per_cat.entry(c).or_insert(0);
                    if *n >= req.max_per_category {
                        return false;
                    }
                    *n += 1;
                }
            }
            chosen.insert(r.idx);
            true
        };
        for x in &scored {
            if out.len() >= req.count {
                break;
            }
            if admit(x.r, x.item, &mut per_cat) {
                out.push(Recommendation {
                    id: x.item.id.to_vec(),
                    score: x.score,
                    reason: reason_of(x.item, x.cooc, x.best_seed, x.by_affinity),
                });
            }
        }
        // Still short (filters, category caps): keep walking the popularity order.
        if out.len() < req.count {
            for r in self.pop.iter(cat_filter) {
                if out.len() >= req.count || budget == 0 {
                    break;
                }
                budget -= 1;
                let Some(it) = eligible_item(r) else {
                    continue;
                };
                if !admit(r, it, &mut per_cat) {
                    continue;
                }
                let (score, by_affinity) = score_of(it, 0.0);
                out.push(Recommendation {
                    id: it.id.to_vec(),
                    score,
                    reason: reason_of(it, 0.0, usize::MAX, by_affinity),
                });
            }
        }
        let personal = out.iter().any(|x| x.reason != Reason::Trending);
        RecList {
            // A personal model with nothing to say fell back to popularity: say so.
            model: if personal || !m.is_personal() {
                req.model_name.to_string()
            } else {
                POPULAR_MODEL.to_string()
            },
            items: out,
        }
    }

    /// Adds the first `n` eligible items of a popularity list to the candidates.
    fn pool_from(
        &self,
        category: Option<u32>,
        n: usize,
        budget: &mut usize,
        eligible: &dyn Fn(ItemRef) -> bool,
        cands: &mut SlotMap<Candidate>,
    ) {
        let mut taken = 0;
        for r in self.pop.iter(category) {
            if taken >= n || *budget == 0 {
                break;
            }
            *budget -= 1;
            if eligible(r) {
                taken += 1;
                let c = cands.entry(r.idx).or_default();
                c.r = Some(r);
            }
        }
    }
}

/// The user's recent distinct items with positive weight, decayed from the user's latest event.
fn collect_seeds(u: &UserState, m: Model, window: usize) -> Vec<Seed<'_>> {
    let hl_ms = (m.recency_s * 1000.0).max(1.0);
    let mut seeds: Vec<Seed> = Vec::new();
    for e in u.history.iter().rev() {
        let age = (u.last_seen - e.ts).max(0) as f64;
        let contrib = f64::from(e.weight) * 0.5f64.powf(age / hl_ms);
        match seeds
            .iter_mut()
            .find(|x| x.key == e.key && x.item == &*e.item)
        {
            Some(sd) => {
                sd.weight += contrib;
                if contrib > sd.best {
                    sd.best = contrib;
                    sd.action = e.action;
                }
            }
            None => {
                if seeds.len() >= window {
                    continue;
                }
                seeds.push(Seed {
                    item: &e.item,
                    key: e.key,
                    weight: contrib,
                    action: e.action,
                    best: contrib,
                });
            }
        }
    }
    seeds.retain(|x| x.weight > 0.0);
    seeds
}

#[cfg(test)]
mod tests {
    use super::super::actions::ActionTable;
    use super::super::catalog::ItemUpdate;
    use super::super::model::{Model, DEFAULT_MODEL};
    use super::super::tests::track;
    use super::*;

    fn req<'a>(model_name: &'a str, model: Model, count: usize) -> RecRequest<'a> {
        RecRequest {
            count,
            model_name,
            model,
            category: None,
            exclude: &[],
            max_per_category: 3,
        }
    }

    fn set_cat(e: &mut Engine, id: &str, c: &str) {
        let up = ItemUpdate {
            category: Some(Some(c.as_bytes().to_vec())),
            ..Default::default()
        };
        e.item_set(id.as_bytes(), up, &Settings::default()).unwrap();
    }

    /// Users who bought A also bought B; C and D are merely popular.
    fn shop() -> (Engine, ActionTable) {
        let t = ActionTable::default();
        let mut e = Engine::default();
        set_cat(&mut e, "A", "c1");
        set_cat(&mut e, "B", "c2");
        for i in 0..5 {
            set_cat(&mut e, &format!("F{i}"), "c3");
        }
        let mut ts = 1_000_000;
        for _ in 0..30 {
            let mut us = UserState::default();
            track(&mut e, &mut us, &t, "A", "purchase", ts);
            track(&mut e, &mut us, &t, "B", "purchase", ts + 1);
            ts += 10;
        }
        for u in 0..60 {
            let mut us = UserState::default();
            let item = format!("F{}", u % 5);
            track(&mut e, &mut us, &t, &item, "view", ts);
            track(&mut e, &mut us, &t, "P", "view", ts + 1);
            ts += 10;
        }
        (e, t)
    }

    #[test]
    fn bought_a_gets_b_with_reason() {
        let (mut e, t) = shop();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "A", "purchase", 5_000_000);
        let l = e.recommend(
            Some(&u),
            &req(DEFAULT_MODEL, Model::DEFAULT, 5),
            &Settings::default(),
        );
        assert_eq!(l.items[0].id, b"B");
        assert_eq!(l.items[0].reason.render(), b"because you purchased A");
        assert!(
            l.items.iter().all(|x| x.id != b"A"),
            "purchased items are excluded"
        );
        assert_eq!(l.model, DEFAULT_MODEL);
    }

    #[test]
    fn cold_user_gets_popular_items() {
        let (e, _) = shop();
        let s = Settings::default();
        let l = e.recommend(None, &req(DEFAULT_MODEL, Model::DEFAULT, 4), &s);
        assert_eq!(l.model, POPULAR_MODEL);
        let pop: Vec<Vec<u8>> = e.popular(100, None, &s).into_iter().map(|x| x.0).collect();
        let got: Vec<Vec<u8>> = l.items.iter().map(|x| x.id.clone()).collect();
        // Same order as popularity, skipping what the category cap removes.
        let mut it = pop.iter();
        for g in &got {
            assert!(it.any(|p| p == g), "{:?} not in popularity order", g);
        }
        assert!(l.items.iter().all(|x| x.reason == Reason::Trending));
    }

    #[test]
    fn category_cap_filters_and_exclusions() {
        let (mut e, t) = shop();
        let s = Settings::default();
        let mut r = req(DEFAULT_MODEL, Model::DEFAULT, 10);
        r.max_per_category = 2;
        let l = e.recommend(None, &r, &s);
        let c3 = l.items.iter().filter(|x| x.id.starts_with(b"F")).count();
        assert!(c3 <= 2);
        let ex: [&[u8]; 1] = [b"P"];
        r.exclude = &ex;
        r.category = Some(b"c3");
        let l = e.recommend(None, &r, &s);
        assert!(l.items.iter().all(|x| x.id.starts_with(b"F")));
        let off = ItemUpdate {
            available: Some(false),
            ..Default::default()
        };
        e.item_set(b"B", off, &s).unwrap();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "A", "purchase", 5_000_000);
        let l = e.recommend(Some(&u), &req(DEFAULT_MODEL, Model::DEFAULT, 10), &s);
        assert!(
            l.items.iter().all(|x| x.id != b"B"),
            "unavailable items are never returned"
        );
        track(&mut e, &mut u, &t, "P", "dislike", 5_000_001);
        let l = e.recommend(Some(&u), &req(DEFAULT_MODEL, Model::DEFAULT, 10), &s);
        assert!(
            l.items.iter().all(|x| x.id != b"P"),
            "disliked items are never returned"
        );
    }

    #[test]
    fn popular_model_ignores_history() {
        let (mut e, t) = shop();
        let mut u = UserState::default();
        track(&mut e, &mut u, &t, "A", "purchase", 5_000_000);
        let l = e.recommend(
            Some(&u),
            &req(POPULAR_MODEL, Model::POPULAR, 3),
            &Settings::default(),
        );
        assert_eq!(l.model, POPULAR_MODEL);
        assert!(l.items.iter().all(|x| x.reason == Reason::Trending));
    }

    #[test]
    fn unknown_category_is_empty() {
        let (e, _) = shop();
        let mut r = req(DEFAULT_MODEL, Model::DEFAULT, 3);
        r.category = Some(b"nope");
        assert!(e.recommend(None, &r, &Settings::default()).items.is_empty());
    }
}
