//! Per-user state: bounded history, action counters, decayed category affinities, purchased and
//! disliked sets, custom features. Stored in one Redis key per user (a module data type).

use super::codec::{DResult, DecodeError, Reader, Writer};
use std::collections::VecDeque;

const ENCODING_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub item: Box<[u8]>,
    /// A hash of `item` (not persisted): distinct-item scans compare it before the bytes.
    pub key: u64,
    /// Index into [`UserState::actions`].
    pub action: u8,
    pub ts: i64,
    pub weight: f32,
}

/// FNV-1a of an item id: a cheap pre-check before comparing ids byte for byte.
pub fn item_key(id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Bounds applied while recording an event.
#[derive(Debug, Clone, Copy)]
pub struct UserLimits {
    pub history: usize,
    pub categories: usize,
    pub excluded: usize,
    pub affinity_half_life_ms: f64,
}

/// A custom feature: (name, value).
pub type Feature = (Box<[u8]>, Box<[u8]>);

#[derive(Debug, Default, Clone, PartialEq)]
pub struct UserState {
    pub history: VecDeque<HistoryEvent>,
    /// Action names seen by this user with their counts.
    pub actions: Vec<(Box<[u8]>, u64)>,
    /// Category affinities, expressed at `affinity_time`.
    pub categories: Vec<(Box<[u8]>, f64)>,
    pub affinity_time: i64,
    pub purchased: VecDeque<Box<[u8]>>,
    pub disliked: VecDeque<Box<[u8]>>,
    pub features: Vec<Feature>,
    pub events: u64,
    pub last_seen: i64,
    /// Experiment arms this user was exposed to: (experiment, arm index). Split assignments
    /// are sticky through this record.
    pub assignments: Vec<(Box<[u8]>, u8)>,
    /// Lists served by experiment arms, newest last, for attribution.
    pub served: VecDeque<ServedList>,
}

/// A list an experiment arm served to this user.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedList {
    pub ts: i64,
    pub experiment: Box<[u8]>,
    pub arm: u8,
    pub items: Vec<Box<[u8]>>,
}

/// Experiments remembered per user (oldest forgotten first).
pub const MAX_ASSIGNMENTS: usize = 1000;

/// One event as the user sees it.
pub struct UserEvent<'a> {
    pub item: &'a [u8],
    pub action: &'a [u8],
    pub weight: f64,
    pub ts: i64,
    pub category: Option<&'a [u8]>,
    pub purchase: bool,
    pub dislike: bool,
}

fn push_bounded(set: &mut VecDeque<Box<[u8]>>, item: &[u8], max: usize) {
    if let Some(pos) = set.iter().position(|x| &**x == item) {
        set.remove(pos);
    }
    if max == 0 {
        return;
    }
    set.push_back(item.into());
    while set.len() > max {
        set.pop_front();
    }
}

impl UserState {
    pub fn record(&mut self, ev: &UserEvent, lim: UserLimits) {
        let action = match self.actions.iter().position(|(n, _)| &**n == ev.action) {
            Some(i) => i,
            None if self.actions.len() < 255 => {
                self.actions.push((ev.action.into(), 0));
                self.actions.len() - 1
            }
            // Unreachable with at most 64 configured actions; count under the last slot.
            None => self.actions.len() - 1,
        };
        if let Some(a) = self.actions.get_mut(action) {
            a.1 += 1;
        }
        self.events += 1;
        self.last_seen = self.last_seen.max(ev.ts);
        self.history.push_back(HistoryEvent {
            item: ev.item.into(),
            key: item_key(ev.item),
            action: action as u8,
            ts: ev.ts,
            weight: ev.weight as f32,
        });
        while self.history.len() > lim.history.max(1) {
            self.history.pop_front();
        }
        if let Some(cat) = ev.category {
            self.add_affinity(cat, ev.weight, ev.ts, lim);
        }
        if ev.purchase {
            push_bounded(&mut self.purchased, ev.item, lim.excluded);
        }
        if ev.dislike {
            push_bounded(&mut self.disliked, ev.item, lim.excluded);
        }
    }

    fn add_affinity(&mut self, cat: &[u8], w: f64, ts: i64, lim: UserLimits) {
        let hl = lim.affinity_half_life_ms.max(1.0);
        let mut add = w;
        if ts >= self.affinity_time {
            let f = 0.5f64.powf((ts - self.affinity_time) as f64 / hl);
            for c in &mut self.categories {
                c.1 *= f;
            }
            self.affinity_time = ts;
        } else {
            add *= 0.5f64.powf((self.affinity_time - ts) as f64 / hl);
        }
        match self.categories.iter_mut().find(|(n, _)| &**n == cat) {
            Some(c) => c.1 += add,
            None => self.categories.push((cat.into(), add)),
        }
        while self.categories.len() > lim.categories.max(1) {
            let mut weakest = 0;
            for (i, c) in self.categories.iter().enumerate() {
                if c.1 < self.categories[weakest].1 {
                    weakest = i;
                }
            }
            self.categories.remove(weakest);
        }
    }

    pub fn action_name(&self, idx: u8) -> &[u8] {
        self.actions.get(idx as usize).map_or(b"", |(n, _)| n)
    }

    pub fn affinity(&self, cat: &[u8]) -> f64 {
        self.categories
            .iter()
            .find(|(n, _)| &**n == cat)
            .map_or(0.0, |c| c.1)
    }

    /// Categories by affinity, strongest first (ties by name).
    pub fn top_categories(&self) -> Vec<(&[u8], f64)> {
        let mut v: Vec<(&[u8], f64)> = self.categories.iter().map(|(n, a)| (&**n, *a)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v
    }

    /// The last `n` distinct items, newest first.
    pub fn recent_items(&self, n: usize) -> Vec<&[u8]> {
        let mut out: Vec<(u64, &[u8])> = Vec::new();
        for e in self.history.iter().rev() {
            if out.len() >= n {
                break;
            }
            if !out.iter().any(|(k, id)| *k == e.key && *id == &*e.item) {
                out.push((e.key, &e.item));
            }
        }
        out.into_iter().map(|(_, id)| id).collect()
    }

    /// Sets custom features; returns how many were new. The caller checks the bound.
    pub fn set_features(&mut self, pairs: &[(&[u8], &[u8])]) -> usize {
        let mut added = 0;
        for (k, v) in pairs {
            match self.features.iter_mut().find(|(n, _)| &**n == *k) {
                Some(f) => f.1 = (*v).into(),
                None => {
                    self.features.push(((*k).into(), (*v).into()));
                    added += 1;
                }
            }
        }
        added
    }

    pub fn assignment(&self, experiment: &[u8]) -> Option<u8> {
        self.assignments
            .iter()
            .find(|(e, _)| &**e == experiment)
            .map(|x| x.1)
    }

    /// Records an exposure; returns true when it is the user's first for this experiment.
    pub fn expose(&mut self, list: ServedList, max_served: usize) -> bool {
        let first = self.assignment(&list.experiment).is_none();
        match self
            .assignments
            .iter_mut()
            .find(|(e, _)| *e == list.experiment)
        {
            Some(a) => a.1 = list.arm,
            None => {
                self.assignments.push((list.experiment.clone(), list.arm));
                if self.assignments.len() > MAX_ASSIGNMENTS {
                    self.assignments.remove(0);
                }
            }
        }
        if max_served > 0 {
            self.served.push_back(list);
            while self.served.len() > max_served {
                self.served.pop_front();
            }
        }
        first
    }

    /// How many of `keys` are not features yet.
    pub fn new_feature_count(&self, keys: &[&[u8]]) -> usize {
        let mut seen: Vec<&[u8]> = Vec::new();
        for k in keys {
            if !seen.contains(k) && !self.features.iter().any(|(n, _)| &**n == *k) {
                seen.push(k);
            }
        }
        seen.len()
    }

    /// An estimate of the heap bytes this state holds (what MEMORY USAGE and INFO report).
    pub fn mem_bytes(&self) -> usize {
        let boxed = |b: &[u8]| b.len() + 16;
        std::mem::size_of::<Self>()
            + self.history.capacity() * std::mem::size_of::<HistoryEvent>()
            + self.history.iter().map(|e| e.item.len()).sum::<usize>()
            + self
                .actions
                .iter()
                .map(|(n, _)| boxed(n) + 8)
                .sum::<usize>()
            + self
                .categories
                .iter()
                .map(|(n, _)| boxed(n) + 8)
                .sum::<usize>()
            + self.purchased.iter().map(|x| boxed(x)).sum::<usize>()
            + self.disliked.iter().map(|x| boxed(x)).sum::<usize>()
            + self
                .features
                .iter()
                .map(|(k, v)| boxed(k) + boxed(v))
                .sum::<usize>()
            + self
                .assignments
                .iter()
                .map(|(e, _)| boxed(e) + 8)
                .sum::<usize>()
            + self
                .served
                .iter()
                .map(|s| {
                    48 + boxed(&s.experiment) + s.items.iter().map(|i| boxed(i)).sum::<usize>()
                })
                .sum::<usize>()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(ENCODING_VERSION);
        w.u64(self.events);
        w.i64(self.last_seen);
        w.len(self.actions.len());
        for (n, c) in &self.actions {
            w.bytes(n);
            w.u64(*c);
        }
        w.len(self.history.len());
        for e in &self.history {
            w.bytes(&e.item);
            w.u8(e.action);
            w.i64(e.ts);
            w.f32(e.weight);
        }
        w.i64(self.affinity_time);
        w.len(self.categories.len());
        for (n, a) in &self.categories {
            w.bytes(n);
            w.f64(*a);
        }
        for set in [&self.purchased, &self.disliked] {
            w.len(set.len());
            for x in set {
                w.bytes(x);
            }
        }
        w.len(self.features.len());
        for (k, v) in &self.features {
            w.bytes(k);
            w.bytes(v);
        }
        w.len(self.assignments.len());
        for (e, a) in &self.assignments {
            w.bytes(e);
            w.u8(*a);
        }
        w.len(self.served.len());
        for s in &self.served {
            w.i64(s.ts);
            w.bytes(&s.experiment);
            w.u8(s.arm);
            w.len(s.items.len());
            for i in &s.items {
                w.bytes(i);
            }
        }
        w.buf
    }

    pub fn decode(buf: &[u8]) -> DResult<Self> {
        let mut r = Reader::new(buf);
        if r.u8()? != ENCODING_VERSION {
            return Err(DecodeError("unknown user encoding version"));
        }
        let mut u = UserState {
            events: r.u64()?,
            last_seen: r.i64()?,
            ..Default::default()
        };
        let na = r.len(12)?;
        if na > 255 {
            return Err(DecodeError("too many actions"));
        }
        for _ in 0..na {
            let n = r.boxed()?;
            u.actions.push((n, r.u64()?));
        }
        let nh = r.len(17)?;
        for _ in 0..nh {
            let item = r.boxed()?;
            let action = r.u8()?;
            if action as usize >= u.actions.len() {
                return Err(DecodeError("history names an unknown action"));
            }
            u.history.push_back(HistoryEvent {
                key: item_key(&item),
                item,
                action,
                ts: r.i64()?,
                weight: r.f32()?,
            });
        }
        u.affinity_time = r.i64()?;
        let nc = r.len(12)?;
        for _ in 0..nc {
            let n = r.boxed()?;
            u.categories.push((n, r.f64()?));
        }
        for set in [&mut u.purchased, &mut u.disliked] {
            let n = r.len(4)?;
            for _ in 0..n {
                set.push_back(r.boxed()?);
            }
        }
        let nf = r.len(8)?;
        for _ in 0..nf {
            let k = r.boxed()?;
            u.features.push((k, r.boxed()?));
        }
        let na = r.len(5)?;
        for _ in 0..na {
            let e = r.boxed()?;
            u.assignments.push((e, r.u8()?));
        }
        let ns = r.len(17)?;
        for _ in 0..ns {
            let ts = r.i64()?;
            let experiment = r.boxed()?;
            let arm = r.u8()?;
            let ni = r.len(4)?;
            let mut items = Vec::with_capacity(ni);
            for _ in 0..ni {
                items.push(r.boxed()?);
            }
            u.served.push_back(ServedList {
                ts,
                experiment,
                arm,
                items,
            });
        }
        r.finish()?;
        Ok(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: UserLimits = UserLimits {
        history: 3,
        categories: 2,
        excluded: 2,
        affinity_half_life_ms: 1000.0,
    };

    fn ev<'a>(item: &'a [u8], action: &'a [u8], ts: i64, cat: Option<&'a [u8]>) -> UserEvent<'a> {
        UserEvent {
            item,
            action,
            weight: 1.0,
            ts,
            category: cat,
            purchase: action == b"purchase",
            dislike: action == b"dislike",
        }
    }

    #[test]
    fn bounded_history_and_sets() {
        let mut u = UserState::default();
        for (i, it) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            u.record(&ev(*it, b"purchase", i as i64, None), LIM);
        }
        assert_eq!(u.history.len(), 3);
        assert_eq!(u.purchased.len(), 2);
        assert_eq!(u.recent_items(10), vec![&b"d"[..], b"c", b"b"]);
        assert_eq!(u.actions, vec![(Box::from(&b"purchase"[..]), 4)]);
        assert_eq!(u.events, 4);
    }

    #[test]
    fn affinity_decays_and_is_bounded() {
        let mut u = UserState::default();
        u.record(&ev(b"a", b"view", 0, Some(b"x")), LIM);
        u.record(&ev(b"b", b"view", 1000, Some(b"y")), LIM);
        assert!((u.affinity(b"x") - 0.5).abs() < 1e-12);
        assert!((u.affinity(b"y") - 1.0).abs() < 1e-12);
        // An old event adds its decayed weight without moving the clock back.
        u.record(&ev(b"c", b"view", 0, Some(b"y")), LIM);
        assert!((u.affinity(b"y") - 1.5).abs() < 1e-12);
        u.record(&ev(b"d", b"view", 1000, Some(b"z")), LIM);
        assert_eq!(u.categories.len(), 2);
        assert_eq!(u.affinity(b"x"), 0.0, "the weakest category was dropped");
    }

    #[test]
    fn encode_round_trip_and_corruption() {
        let mut u = UserState::default();
        u.record(&ev(b"a\x00", b"view", 5, Some(b"c")), LIM);
        u.record(&ev(b"b", b"dislike", 6, None), LIM);
        u.set_features(&[(b"k", b"v")]);
        u.expose(
            ServedList {
                ts: 9,
                experiment: b"e".as_slice().into(),
                arm: 1,
                items: vec![b"a".as_slice().into()],
            },
            4,
        );
        let buf = u.encode();
        assert_eq!(UserState::decode(&buf).unwrap(), u);
        for cut in 0..buf.len() {
            assert!(UserState::decode(&buf[..cut]).is_err());
        }
        // Flipping any byte never panics (it may or may not decode).
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0xA5;
            let _ = UserState::decode(&b);
        }
    }

    #[test]
    fn features() {
        let mut u = UserState::default();
        assert_eq!(u.new_feature_count(&[b"a", b"a", b"b"]), 2);
        assert_eq!(u.set_features(&[(b"a", b"1"), (b"b", b"2")]), 2);
        assert_eq!(u.set_features(&[(b"a", b"3")]), 0);
        assert_eq!(&*u.features[0].1, b"3");
    }
}
