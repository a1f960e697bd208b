//! Experiments meet users: which arm serves a user, what an exposure records, and which arm
//! and position a click or conversion is attributed to.

use super::experiment::{ArmEvent, Experiment, Policy};
use super::user::{ServedList, UserState};
use super::Engine;
use rand::Rng;

/// What a click or conversion was attributed to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub experiment: String,
    pub arm: usize,
    pub position: Option<usize>,
}

/// A rec id's experiment part: (served at, experiment, arm name).
pub struct RecRef<'a> {
    pub ts: i64,
    pub experiment: &'a str,
    pub arm: &'a str,
}

impl Experiment {
    /// The arm serving `user` now: a stopped experiment serves its winner (or the control) to
    /// everyone; a split user keeps the arm stored at first exposure, so later weight changes
    /// move nobody already exposed; Thompson draws per request. `None` outside the coverage.
    pub fn arm_for<R: Rng + ?Sized>(
        &self,
        user_id: &[u8],
        user: Option<&UserState>,
        rng: &mut R,
    ) -> Option<usize> {
        if self.is_running() && self.policy == Policy::Split {
            if let Some(a) = user.and_then(|u| u.assignment(&self.key())) {
                if (a as usize) < self.arms.len() {
                    return Some(a as usize);
                }
            }
        }
        self.choose(user_id, rng)
    }
}

impl Engine {
    /// Adds an experiment, stamping its incarnation.
    pub fn add_experiment(
        &mut self,
        mut e: Experiment,
        max: usize,
    ) -> Result<(), super::experiment::ExperimentError> {
        self.stamp += 1;
        e.uid = self.stamp;
        self.experiments.insert(e, max)
    }

    /// The time an exposure at `ts` is recorded with: later than the user's previous served
    /// list, so every rec id names exactly one list.
    pub fn exposure_ts(user: &UserState, ts: i64) -> i64 {
        match user.served.back() {
            Some(last) if last.ts >= ts => last.ts.saturating_add(1),
            _ => ts,
        }
    }

    /// Records that `arm` of `experiment` served `items` to the user at `ts` (already made
    /// unique with [`Engine::exposure_ts`]): one impression (and a user, on first exposure), the
    /// sticky assignment and the list for attribution. Nothing is counted for a stopped
    /// experiment.
    pub fn expose(
        &mut self,
        user: &mut UserState,
        experiment: &str,
        arm: usize,
        ts: i64,
        items: &[&[u8]],
        max_served: usize,
    ) -> bool {
        let Some(e) = self.experiments.get_mut(experiment) else {
            return false;
        };
        if !e.is_running() || arm >= e.arms.len() {
            return false;
        }
        let key = e.key();
        // A record of an earlier experiment of the same name is forgotten.
        let name = experiment.as_bytes();
        user.assignments.retain(|(k, _)| {
            let same_name = k.len() > name.len() && k.starts_with(name) && k[name.len()] == b'#';
            !same_name || **k == *key
        });
        let first = user.expose(
            ServedList {
                ts,
                experiment: key.into(),
                arm: arm as u8,
                items: items.iter().map(|i| (*i).into()).collect(),
            },
            max_served,
        );
        e.record(arm, ArmEvent::Impression { new_user: first })
    }

    /// Attributes a click or conversion on `item` at `ts`: through the rec id when given (its
    /// list gives the position), else to the newest list within `window_ms` that showed the
    /// item. An item no arm served counts for none.
    pub fn attribute(
        &mut self,
        user: &UserState,
        item: &[u8],
        ev: ArmEvent,
        ts: i64,
        rec: Option<RecRef>,
        window_ms: i64,
    ) -> Option<Attribution> {
        let position_in = |l: &ServedList| l.items.iter().position(|i| &**i == item);
        let (exp, arm, position) =
            match rec {
                Some(r) => {
                    let e = self.experiments.get(r.experiment)?;
                    let arm = e.arm_index(r.arm.as_bytes())?;
                    let key = e.key();
                    let list =
                        user.served.iter().rev().find(|l| {
                            l.ts == r.ts && *l.experiment == *key && l.arm as usize == arm
                        });
                    match list {
                        // The list is known: it must have shown the item.
                        Some(l) => (r.experiment.to_string(), arm, Some(position_in(l)?)),
                        // Older than what the user keeps: credited only if this arm served the user.
                        None if user.assignment(&key) == Some(arm as u8) => {
                            (r.experiment.to_string(), arm, None)
                        }
                        None => return None,
                    }
                }
                None => {
                    let l = user.served.iter().rev().find(|l| {
                        l.ts <= ts && ts - l.ts <= window_ms && position_in(l).is_some()
                    })?;
                    let (name, uid) = std::str::from_utf8(&l.experiment).ok()?.rsplit_once('#')?;
                    let e = self.experiments.get(name)?;
                    if e.uid.to_string() != uid {
                        return None;
                    }
                    (name.to_string(), l.arm as usize, position_in(l))
                }
            };
        let e = self.experiments.get_mut(&exp)?;
        e.record_at(arm, ev, position).then_some(Attribution {
            experiment: exp,
            arm,
            position,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::experiment::{ArmSpec, ExperimentSpec};
    use super::*;
    use rand::SeedableRng;

    fn spec(policy: Policy) -> Experiment {
        let mut s = ExperimentSpec::new(
            b"exp",
            vec![
                ArmSpec {
                    name: b"control".to_vec(),
                    model: b"default".to_vec(),
                    weight: 0.5,
                },
                ArmSpec {
                    name: b"treat".to_vec(),
                    model: b"popular".to_vec(),
                    weight: 0.5,
                },
            ],
        );
        s.policy = policy;
        Experiment::create(s).unwrap()
    }

    fn engine() -> Engine {
        let mut e = Engine::default();
        e.add_experiment(spec(Policy::Split), 10).unwrap();
        e
    }

    #[test]
    fn split_is_sticky_after_exposure() {
        let mut e = engine();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut u = UserState::default();
        let arm = e
            .experiments
            .get("exp")
            .unwrap()
            .arm_for(b"u1", Some(&u), &mut rng)
            .unwrap();
        assert!(e.expose(&mut u, "exp", arm, 10, &[b"a"], 5));
        // Weights move everyone else, but not the exposed user.
        let other = 1 - arm;
        let mut w = vec![0.0, 0.0];
        w[other] = 1.0;
        e.experiments
            .get_mut("exp")
            .unwrap()
            .set_weights(&w)
            .unwrap();
        let x = e.experiments.get("exp").unwrap();
        assert_eq!(x.arm_for(b"u1", Some(&u), &mut rng), Some(arm));
        assert_eq!(x.arm_for(b"u1", None, &mut rng), Some(other));
        assert_eq!(x.arms[arm].impressions, 1);
        assert_eq!(x.arms[arm].users, 1);
        e.expose(&mut u, "exp", arm, 11, &[b"a"], 5);
        assert_eq!(e.experiments.get("exp").unwrap().arms[arm].users, 1);
    }

    #[test]
    fn attribution_with_and_without_rec_id() {
        let mut e = engine();
        let mut u = UserState::default();
        e.expose(&mut u, "exp", 1, 1_000, &[b"a", b"b"], 5);
        let rec = RecRef {
            ts: 1_000,
            experiment: "exp",
            arm: "treat",
        };
        let a = e
            .attribute(&u, b"b", ArmEvent::Click, 2_000, Some(rec), 60_000)
            .unwrap();
        assert_eq!((a.arm, a.position), (1, Some(1)));
        let a = e
            .attribute(&u, b"a", ArmEvent::Conversion, 2_000, None, 60_000)
            .unwrap();
        assert_eq!((a.arm, a.position), (1, Some(0)));
        // Not served by any arm, or outside the window: nothing.
        assert!(e
            .attribute(&u, b"zz", ArmEvent::Click, 2_000, None, 60_000)
            .is_none());
        assert!(e
            .attribute(&u, b"a", ArmEvent::Click, 100_000, None, 60_000)
            .is_none());
        let x = e.experiments.get("exp").unwrap();
        assert_eq!((x.arms[1].clicks, x.arms[1].conversions), (1, 1));
        assert_eq!(x.arms[1].positions, vec![[0, 1], [1, 0]]);
        assert_eq!(x.arms[0].clicks, 0);
    }

    #[test]
    fn forged_or_stale_rec_ids_count_for_none() {
        let mut e = engine();
        let mut u = UserState::default();
        e.expose(&mut u, "exp", 0, 1_000, &[b"a"], 5);
        let forged = RecRef {
            ts: 5,
            experiment: "exp",
            arm: "treat",
        };
        assert!(e
            .attribute(&u, b"a", ArmEvent::Click, 2_000, Some(forged), 60_000)
            .is_none());
        // Deleted and re-created: the old assignment and lists no longer apply.
        let old = e.experiments.remove("exp").unwrap();
        e.add_experiment(old, 10).unwrap();
        assert!(e
            .attribute(&u, b"a", ArmEvent::Click, 2_000, None, 60_000)
            .is_none());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x = e.experiments.get("exp").unwrap();
        assert_eq!(
            x.arm_for(b"u", Some(&u), &mut rng),
            x.arm_for(b"u", None, &mut rng)
        );
        assert_eq!(Engine::exposure_ts(&u, 1_000), 1_001);
        assert_eq!(Engine::exposure_ts(&u, 5_000), 5_000);
    }

    #[test]
    fn stopped_experiments_count_nothing_and_serve_the_winner() {
        let mut e = engine();
        e.experiments
            .get_mut("exp")
            .unwrap()
            .stop(Some(b"treat"))
            .unwrap();
        let mut u = UserState::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            e.experiments
                .get("exp")
                .unwrap()
                .arm_for(b"x", None, &mut rng),
            Some(1)
        );
        assert!(!e.expose(&mut u, "exp", 1, 5, &[b"a"], 5));
        assert_eq!(e.experiments.get("exp").unwrap().arms[1].impressions, 0);
    }
}
