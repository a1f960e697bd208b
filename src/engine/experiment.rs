//! Experiments: arms that serve named models, chosen by GrowthBook-compatible hashing (`split`)
//! or by Thompson sampling (`thompson`), with each arm's counters, the persisted form, and the
//! statistics report.

use super::abstats::{self, ArmAnalysis, ArmInput, StatsConfig, Verdict};
use super::assign::{self, HashVersion};
use super::bandit::{self, ArmRecord};
use super::codec::{DResult, DecodeError, Reader, Writer};
use super::model::valid_name;
use rand::Rng;
use std::collections::BTreeMap;
use std::fmt;

/// Arms per experiment, the control included. The probability-of-being-best quadrature costs
/// grow with the square of the arm count.
pub const MAX_ARMS: usize = 10;
/// Longest SEED, in bytes.
pub const MAX_SEED_LEN: usize = 256;
/// The relative minimum detectable effect when MDE is not given.
pub const DEFAULT_MDE: f64 = 0.10;

const ENCODING_VERSION: u8 = 1;
const COLLECTION_VERSION: u8 = 1;

/// How users are given arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Deterministic GrowthBook hashing by weights and coverage.
    #[default]
    Split,
    /// Thompson sampling on the experiment's metric.
    Thompson,
}

impl Policy {
    pub fn from_name(s: &[u8]) -> Option<Self> {
        if s.eq_ignore_ascii_case(b"split") {
            Some(Policy::Split)
        } else if s.eq_ignore_ascii_case(b"thompson") {
            Some(Policy::Thompson)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Split => "split",
            Policy::Thompson => "thompson",
        }
    }
}

/// The event an experiment is judged on; its rate is per impression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    #[default]
    Click,
    Conversion,
}

impl Metric {
    pub fn from_name(s: &[u8]) -> Option<Self> {
        if s.eq_ignore_ascii_case(b"click") {
            Some(Metric::Click)
        } else if s.eq_ignore_ascii_case(b"conversion") {
            Some(Metric::Conversion)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Click => "click",
            Metric::Conversion => "conversion",
        }
    }
}

/// Whether the experiment still assigns and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Running,
    /// Everyone gets the winner (the control when there is none); nothing more is counted.
    Stopped { winner: Option<usize> },
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Stopped { .. } => "stopped",
        }
    }
}

/// One arm: the model it serves, its configured weight and its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    pub model: String,
    pub weight: f64,
    /// Distinct users first exposed to this arm.
    pub users: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    /// (clicks, conversions) per list position (0 = top), up to [`MAX_POSITIONS`].
    pub positions: Vec<[u64; 2]>,
}

/// Positions tracked per arm (the largest COUNT REC.GET accepts).
pub const MAX_POSITIONS: usize = 1000;

/// Something to count for an arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmEvent {
    /// The arm served a response; `new_user` when it is the user's first exposure.
    Impression {
        new_user: bool,
    },
    Click,
    Conversion,
}

/// An arm as REC.EXPERIMENT.CREATE gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmSpec {
    pub name: Vec<u8>,
    pub model: Vec<u8>,
    pub weight: f64,
}

/// What REC.EXPERIMENT.CREATE asks for; [`ExperimentSpec::new`] fills in the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentSpec {
    pub name: Vec<u8>,
    pub policy: Policy,
    /// `None` (or empty, as in GrowthBook) means the experiment's name.
    pub seed: Option<Vec<u8>>,
    pub hash_version: HashVersion,
    pub coverage: f64,
    pub metric: Metric,
    pub mde: f64,
    /// The first arm is the control.
    pub arms: Vec<ArmSpec>,
}

impl ExperimentSpec {
    pub fn new(name: &[u8], arms: Vec<ArmSpec>) -> Self {
        ExperimentSpec {
            name: name.to_vec(),
            policy: Policy::Split,
            seed: None,
            hash_version: HashVersion::V2,
            coverage: 1.0,
            metric: Metric::Click,
            mde: DEFAULT_MDE,
            arms,
        }
    }
}

/// Why an experiment cannot be created, changed or found.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentError {
    BadName,
    BadArmName,
    BadModelName,
    DuplicateArm(String),
    ArmCount(usize),
    BadWeight,
    BadCoverage,
    BadMde,
    BadSeed,
    UnknownArm,
    Exists(String),
    NotFound,
    Full(usize),
}

impl fmt::Display for ExperimentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExperimentError::BadName => {
                f.write_str("bad experiment name — expected 1-64 of A-Z a-z 0-9 _ . -")
            }
            ExperimentError::BadArmName => {
                f.write_str("bad arm name — expected 1-64 of A-Z a-z 0-9 _ . -")
            }
            ExperimentError::BadModelName => {
                f.write_str("bad model name — expected 1-64 of A-Z a-z 0-9 _ . -")
            }
            ExperimentError::DuplicateArm(a) => {
                write!(f, "arm '{a}' appears twice — expected distinct arm names")
            }
            ExperimentError::ArmCount(n) => {
                write!(f, "{n} arms — expected 2 to {MAX_ARMS}")
            }
            ExperimentError::BadWeight => f.write_str(
                "bad weight — expected one finite number >= 0 per arm, with a positive sum",
            ),
            ExperimentError::BadCoverage => f.write_str("bad coverage — expected 0 to 1"),
            ExperimentError::BadMde => {
                f.write_str("bad mde — expected a relative effect greater than 0")
            }
            ExperimentError::BadSeed => {
                write!(f, "bad seed — expected at most {MAX_SEED_LEN} bytes")
            }
            ExperimentError::UnknownArm => {
                f.write_str("no such arm — expected one of the experiment's arms")
            }
            ExperimentError::Exists(n) => {
                write!(
                    f,
                    "experiment '{n}' exists — expected a new name, or DEL first"
                )
            }
            ExperimentError::NotFound => f.write_str("no such experiment"),
            ExperimentError::Full(n) => {
                write!(
                    f,
                    "too many experiments ({n}) — expected fewer, or DEL some"
                )
            }
        }
    }
}

/// An experiment: its configuration, its arms (the first is the control) and its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub name: String,
    pub policy: Policy,
    pub seed: Vec<u8>,
    pub hash_version: HashVersion,
    pub coverage: f64,
    pub metric: Metric,
    pub mde: f64,
    pub arms: Vec<Arm>,
    pub state: State,
    /// Which incarnation of the name this is (an engine stamp set when it is added), so a user's
    /// record of a deleted experiment never applies to a new one of the same name.
    pub uid: u64,
}

fn name_string(b: &[u8], err: ExperimentError) -> Result<String, ExperimentError> {
    if !valid_name(b) {
        return Err(err);
    }
    String::from_utf8(b.to_vec()).map_err(|_| err)
}

fn valid_weights(w: &[f64]) -> bool {
    w.iter().all(|w| w.is_finite() && *w >= 0.0) && w.iter().sum::<f64>() > 0.0
}

impl Experiment {
    /// Validates a spec and builds the experiment, with zero counters.
    pub fn create(spec: ExperimentSpec) -> Result<Self, ExperimentError> {
        let name = name_string(&spec.name, ExperimentError::BadName)?;
        let seed = match spec.seed {
            Some(s) if !s.is_empty() => s,
            _ => name.as_bytes().to_vec(),
        };
        let mut arms = Vec::with_capacity(spec.arms.len());
        for a in &spec.arms {
            arms.push(Arm {
                name: name_string(&a.name, ExperimentError::BadArmName)?,
                model: name_string(&a.model, ExperimentError::BadModelName)?,
                weight: a.weight,
                users: 0,
                impressions: 0,
                clicks: 0,
                conversions: 0,
                positions: Vec::new(),
            });
        }
        let e = Experiment {
            name,
            policy: spec.policy,
            seed,
            hash_version: spec.hash_version,
            coverage: spec.coverage,
            metric: spec.metric,
            mde: spec.mde,
            arms,
            state: State::Running,
            uid: 0,
        };
        e.validate()?;
        Ok(e)
    }

    /// Checks every invariant; creation and loading both go through it.
    fn validate(&self) -> Result<(), ExperimentError> {
        if !valid_name(self.name.as_bytes()) {
            return Err(ExperimentError::BadName);
        }
        if self.seed.is_empty() || self.seed.len() > MAX_SEED_LEN {
            return Err(ExperimentError::BadSeed);
        }
        if !(0.0..=1.0).contains(&self.coverage) {
            return Err(ExperimentError::BadCoverage);
        }
        if !(self.mde.is_finite() && self.mde > 0.0) {
            return Err(ExperimentError::BadMde);
        }
        if !(2..=MAX_ARMS).contains(&self.arms.len()) {
            return Err(ExperimentError::ArmCount(self.arms.len()));
        }
        for (i, a) in self.arms.iter().enumerate() {
            if !valid_name(a.name.as_bytes()) {
                return Err(ExperimentError::BadArmName);
            }
            if !valid_name(a.model.as_bytes()) {
                return Err(ExperimentError::BadModelName);
            }
            if self.arms.iter().take(i).any(|b| b.name == a.name) {
                return Err(ExperimentError::DuplicateArm(a.name.clone()));
            }
        }
        if !valid_weights(&self.weights()) {
            return Err(ExperimentError::BadWeight);
        }
        if let State::Stopped { winner: Some(w) } = self.state {
            if w >= self.arms.len() {
                return Err(ExperimentError::UnknownArm);
            }
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    pub fn arm(&self, i: usize) -> Option<&Arm> {
        self.arms.get(i)
    }

    pub fn arm_index(&self, name: &[u8]) -> Option<usize> {
        self.arms.iter().position(|a| a.name.as_bytes() == name)
    }

    /// The configured weights, in arm order.
    pub fn weights(&self) -> Vec<f64> {
        self.arms.iter().map(|a| a.weight).collect()
    }

    /// The weights as shares of traffic (see [`assign::normalize_weights`]).
    pub fn shares(&self) -> Vec<f64> {
        assign::normalize_weights(&self.weights())
    }

    /// Replaces the weights. Users already exposed keep their stored arm; the new split applies
    /// to new users.
    pub fn set_weights(&mut self, weights: &[f64]) -> Result<(), ExperimentError> {
        if weights.len() != self.arms.len() || !valid_weights(weights) {
            return Err(ExperimentError::BadWeight);
        }
        for (a, w) in self.arms.iter_mut().zip(weights) {
            a.weight = *w;
        }
        Ok(())
    }

    /// The arm GrowthBook hashing gives `user`, or `None` outside the coverage.
    pub fn split_arm(&self, user: &[u8]) -> Option<usize> {
        assign::assign(
            &self.seed,
            user,
            self.hash_version,
            self.coverage,
            &self.weights(),
        )
    }

    /// Whether `user` is inside the coverage (the same hash as the split, so a user is in or out
    /// for good).
    pub fn in_coverage(&self, user: &[u8]) -> bool {
        assign::hash(&self.seed, user, self.hash_version) < self.coverage
    }

    /// Each arm's successes (the metric) and failures (impressions without it).
    pub fn bandit_records(&self) -> Vec<ArmRecord> {
        self.arms
            .iter()
            .map(|a| {
                let s = self.metric_count(a).min(a.impressions);
                ArmRecord::new(s, a.impressions - s)
            })
            .collect()
    }

    fn metric_count(&self, a: &Arm) -> u64 {
        match self.metric {
            Metric::Click => a.clicks,
            Metric::Conversion => a.conversions,
        }
    }

    /// The arm for a user who has none stored yet: once stopped, the winner (or the control) for
    /// everyone; otherwise by the policy, `None` outside the coverage. `rng` is only drawn from
    /// by Thompson sampling.
    pub fn choose<R: Rng + ?Sized>(&self, user: &[u8], rng: &mut R) -> Option<usize> {
        match self.state {
            State::Stopped { winner } => Some(winner.unwrap_or(0)),
            State::Running => match self.policy {
                Policy::Split => self.split_arm(user),
                Policy::Thompson => {
                    if self.in_coverage(user) {
                        bandit::choose(&self.bandit_records(), rng)
                    } else {
                        None
                    }
                }
            },
        }
    }

    /// Counts an event for arm `arm`; false (and nothing counted) once stopped or for an arm
    /// that does not exist.
    pub fn record(&mut self, arm: usize, ev: ArmEvent) -> bool {
        if !self.is_running() {
            return false;
        }
        let Some(a) = self.arms.get_mut(arm) else {
            return false;
        };
        match ev {
            ArmEvent::Impression { new_user } => {
                a.impressions = a.impressions.saturating_add(1);
                if new_user {
                    a.users = a.users.saturating_add(1);
                }
            }
            ArmEvent::Click => a.clicks = a.clicks.saturating_add(1),
            ArmEvent::Conversion => a.conversions = a.conversions.saturating_add(1),
        }
        true
    }

    /// Counts a click or conversion at a list position (when known) as well as for the arm.
    pub fn record_at(&mut self, arm: usize, ev: ArmEvent, position: Option<usize>) -> bool {
        if !self.record(arm, ev) {
            return false;
        }
        let (Some(pos), Some(a)) = (position, self.arms.get_mut(arm)) else {
            return true;
        };
        let slot = match ev {
            ArmEvent::Click => 0,
            ArmEvent::Conversion => 1,
            ArmEvent::Impression { .. } => return true,
        };
        if pos < MAX_POSITIONS {
            if a.positions.len() <= pos {
                a.positions.resize(pos + 1, [0, 0]);
            }
            if let Some(p) = a.positions.get_mut(pos) {
                p[slot] = p[slot].saturating_add(1);
            }
        }
        true
    }

    /// Stops the experiment, optionally naming the arm everyone gets from now on. Stopping a
    /// stopped experiment again changes its winner.
    pub fn stop(&mut self, winner: Option<&[u8]>) -> Result<(), ExperimentError> {
        let winner = match winner {
            Some(n) => Some(self.arm_index(n).ok_or(ExperimentError::UnknownArm)?),
            None => None,
        };
        self.state = State::Stopped { winner };
        Ok(())
    }

    /// The REC.EXPERIMENT.STATS report with the default settings.
    pub fn stats(&self) -> ExperimentStats {
        self.stats_with(&StatsConfig::default())
    }

    pub fn stats_with(&self, cfg: &StatsConfig) -> ExperimentStats {
        let inputs: Vec<ArmInput> = self
            .arms
            .iter()
            .map(|a| ArmInput {
                trials: a.impressions,
                successes: self.metric_count(a),
                users: a.users,
            })
            .collect();
        // A bandit's allocation is adaptive by design: there is no fixed ratio to check.
        let shares = self.shares();
        let weights = (self.policy == Policy::Split).then_some(shares.as_slice());
        let analysis = abstats::analyze(&inputs, weights, self.mde, cfg);
        let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let arms = self
            .arms
            .iter()
            .zip(analysis.arms)
            .map(|(a, s)| ArmStats {
                name: a.name.clone(),
                model: a.model.clone(),
                weight: a.weight,
                users: a.users,
                impressions: a.impressions,
                clicks: a.clicks,
                conversions: a.conversions,
                ctr: rate(a.clicks, a.impressions),
                conversion_rate: rate(a.conversions, a.impressions),
                stats: s,
            })
            .collect();
        ExperimentStats {
            name: self.name.clone(),
            policy: self.policy,
            metric: self.metric,
            state: self.state,
            arms,
            srm_pvalue: analysis.srm_pvalue,
            srm: analysis.srm_pvalue.is_some_and(|p| p < cfg.srm_threshold),
            required_per_arm: analysis.required_per_arm,
            verdict: analysis.verdict,
        }
    }

    pub fn mem_bytes(&self) -> usize {
        let arms: usize = self
            .arms
            .iter()
            .map(|a| a.name.len() + a.model.len() + std::mem::size_of::<Arm>())
            .sum();
        std::mem::size_of::<Self>() + self.name.len() + self.seed.len() + arms
    }

    pub fn save(&self, w: &mut Writer) {
        w.u8(ENCODING_VERSION);
        w.bytes(self.name.as_bytes());
        w.u8(match self.policy {
            Policy::Split => 0,
            Policy::Thompson => 1,
        });
        w.bytes(&self.seed);
        w.u8(self.hash_version.number());
        w.f64(self.coverage);
        w.u8(match self.metric {
            Metric::Click => 0,
            Metric::Conversion => 1,
        });
        w.f64(self.mde);
        w.len(self.arms.len());
        for a in &self.arms {
            w.bytes(a.name.as_bytes());
            w.bytes(a.model.as_bytes());
            w.f64(a.weight);
            w.u64(a.users);
            w.u64(a.impressions);
            w.u64(a.clicks);
            w.u64(a.conversions);
            w.len(a.positions.len());
            for p in &a.positions {
                w.u64(p[0]);
                w.u64(p[1]);
            }
        }
        match self.state {
            State::Running => w.u8(0),
            State::Stopped { winner: None } => w.u8(1),
            State::Stopped { winner: Some(i) } => {
                w.u8(2);
                w.len(i);
            }
        }
        w.u64(self.uid);
    }

    /// How a user's state names this experiment: `<name>#<uid>`.
    pub fn key(&self) -> Vec<u8> {
        format!("{}#{}", self.name, self.uid).into_bytes()
    }

    pub fn load(r: &mut Reader) -> DResult<Self> {
        if r.u8()? != ENCODING_VERSION {
            return Err(DecodeError("unknown experiment encoding version"));
        }
        let name = r.string()?;
        let policy = match r.u8()? {
            0 => Policy::Split,
            1 => Policy::Thompson,
            _ => return Err(DecodeError("bad experiment policy")),
        };
        let seed = r.bytes()?.to_vec();
        let hash_version =
            HashVersion::from_number(u64::from(r.u8()?)).ok_or(DecodeError("bad hash version"))?;
        let coverage = r.f64()?;
        let metric = match r.u8()? {
            0 => Metric::Click,
            1 => Metric::Conversion,
            _ => return Err(DecodeError("bad experiment metric")),
        };
        let mde = r.f64()?;
        // Each arm is at least two length-prefixed names, a weight and four counters.
        let n = r.len(4 + 4 + 8 + 32)?;
        if n > MAX_ARMS {
            return Err(DecodeError("too many arms"));
        }
        let mut arms = Vec::with_capacity(n);
        for _ in 0..n {
            arms.push(Arm {
                name: r.string()?,
                model: r.string()?,
                weight: r.f64()?,
                users: r.u64()?,
                impressions: r.u64()?,
                clicks: r.u64()?,
                conversions: r.u64()?,
                positions: {
                    let np = r.len(16)?;
                    if np > MAX_POSITIONS {
                        return Err(DecodeError("too many positions"));
                    }
                    let mut v = Vec::with_capacity(np);
                    for _ in 0..np {
                        v.push([r.u64()?, r.u64()?]);
                    }
                    v
                },
            });
        }
        let state = match r.u8()? {
            0 => State::Running,
            1 => State::Stopped { winner: None },
            2 => State::Stopped {
                winner: Some(r.len(0)?),
            },
            _ => return Err(DecodeError("bad experiment state")),
        };
        let uid = r.u64()?;
        let e = Experiment {
            name,
            policy,
            seed,
            hash_version,
            coverage,
            metric,
            mde,
            arms,
            state,
            uid,
        };
        e.validate()
            .map_err(|_| DecodeError("invalid experiment"))?;
        Ok(e)
    }
}

/// One arm's line of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmStats {
    pub name: String,
    pub model: String,
    pub weight: f64,
    pub users: u64,
    pub impressions: u64,
    pub clicks: u64,
    pub conversions: u64,
    /// Clicks per impression.
    pub ctr: Option<f64>,
    /// Conversions per impression.
    pub conversion_rate: Option<f64>,
    /// The statistics of the experiment's metric (see [`abstats::ArmAnalysis`]).
    pub stats: ArmAnalysis,
}

/// The REC.EXPERIMENT.STATS report.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentStats {
    pub name: String,
    pub policy: Policy,
    pub metric: Metric,
    pub state: State,
    pub arms: Vec<ArmStats>,
    /// `None` for Thompson sampling and before any user.
    pub srm_pvalue: Option<f64>,
    /// Whether the SRM p-value is below the threshold (0.001).
    pub srm: bool,
    /// Impressions per arm the MDE needs at the control's observed rate.
    pub required_per_arm: Option<u64>,
    pub verdict: Verdict,
}

impl ExperimentStats {
    /// The verdict as the reply shows it: `collecting`, `winner <arm>`, `no difference`, `srm`.
    pub fn verdict_text(&self) -> String {
        match self.verdict {
            Verdict::Collecting => "collecting".to_string(),
            Verdict::NoDifference => "no difference".to_string(),
            Verdict::Srm => "srm".to_string(),
            Verdict::Winner(i) => match self.arms.get(i) {
                Some(a) => format!("winner {}", a.name),
                None => "collecting".to_string(),
            },
        }
    }
}

/// All experiments of a node, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Experiments {
    map: BTreeMap<String, Experiment>,
}

impl Experiments {
    pub fn get(&self, name: &str) -> Option<&Experiment> {
        self.map.get(name)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Experiment> {
        self.map.get_mut(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Experiment> {
        self.map.values()
    }

    /// Adds a new experiment, keeping at most `max`.
    pub fn insert(&mut self, e: Experiment, max: usize) -> Result<(), ExperimentError> {
        if self.map.contains_key(&e.name) {
            return Err(ExperimentError::Exists(e.name));
        }
        if self.map.len() >= max {
            return Err(ExperimentError::Full(max));
        }
        self.map.insert(e.name.clone(), e);
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Option<Experiment> {
        self.map.remove(name)
    }

    pub fn mem_bytes(&self) -> usize {
        self.map
            .values()
            .map(|e| e.mem_bytes() + e.name.len() + 48)
            .sum()
    }

    pub fn save(&self, w: &mut Writer) {
        w.u8(COLLECTION_VERSION);
        w.len(self.map.len());
        for e in self.map.values() {
            e.save(w);
        }
    }

    pub fn load(r: &mut Reader) -> DResult<Self> {
        if r.u8()? != COLLECTION_VERSION {
            return Err(DecodeError("unknown experiments encoding version"));
        }
        // An experiment takes at least ~60 bytes (two arms, names and fixed fields).
        let n = r.len(60)?;
        let mut map = BTreeMap::new();
        for _ in 0..n {
            let e = Experiment::load(r)?;
            if map.contains_key(&e.name) {
                return Err(DecodeError("duplicate experiment"));
            }
            map.insert(e.name.clone(), e);
        }
        Ok(Experiments { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn arm(name: &str, model: &str, weight: f64) -> ArmSpec {
        ArmSpec {
            name: name.as_bytes().to_vec(),
            model: model.as_bytes().to_vec(),
            weight,
        }
    }

    fn ab() -> Experiment {
        Experiment::create(ExperimentSpec::new(
            b"hero",
            vec![arm("control", "default", 1.0), arm("fast", "popular", 1.0)],
        ))
        .unwrap()
    }

    #[test]
    fn create_validates_and_defaults() {
        let e = ab();
        assert_eq!(e.seed, b"hero");
        assert_eq!(e.hash_version, HashVersion::V2);
        assert_eq!((e.coverage, e.mde), (1.0, DEFAULT_MDE));
        assert_eq!(
            (e.policy, e.metric, e.state),
            (Policy::Split, Metric::Click, State::Running)
        );

        let spec = |f: &dyn Fn(&mut ExperimentSpec)| {
            let mut s = ExperimentSpec::new(
                b"x",
                vec![arm("a", "default", 1.0), arm("b", "default", 1.0)],
            );
            f(&mut s);
            Experiment::create(s)
        };
        assert_eq!(
            spec(&|s| s.name = b"a:b".to_vec()),
            Err(ExperimentError::BadName)
        );
        assert_eq!(
            spec(&|s| s.arms[1].name = b"".to_vec()),
            Err(ExperimentError::BadArmName)
        );
        assert_eq!(
            spec(&|s| s.arms[1].model = b"m m".to_vec()),
            Err(ExperimentError::BadModelName)
        );
        assert_eq!(
            spec(&|s| s.arms[1].name = b"a".to_vec()),
            Err(ExperimentError::DuplicateArm("a".into()))
        );
        assert_eq!(
            spec(&|s| s.arms.truncate(1)),
            Err(ExperimentError::ArmCount(1))
        );
        assert_eq!(
            spec(&|s| s.arms = (0..11).map(|i| arm(&format!("a{i}"), "m", 1.0)).collect()),
            Err(ExperimentError::ArmCount(11))
        );
        assert_eq!(
            spec(&|s| s.arms[0].weight = -1.0),
            Err(ExperimentError::BadWeight)
        );
        assert_eq!(
            spec(&|s| s.arms[0].weight = f64::NAN),
            Err(ExperimentError::BadWeight)
        );
        assert_eq!(
            spec(&|s| {
                s.arms[0].weight = 0.0;
                s.arms[1].weight = 0.0;
            }),
            Err(ExperimentError::BadWeight)
        );
        assert_eq!(
            spec(&|s| s.coverage = 1.5),
            Err(ExperimentError::BadCoverage)
        );
        assert_eq!(
            spec(&|s| s.coverage = f64::NAN),
            Err(ExperimentError::BadCoverage)
        );
        assert_eq!(spec(&|s| s.mde = 0.0), Err(ExperimentError::BadMde));
        assert_eq!(
            spec(&|s| s.seed = Some(vec![b's'; 257])),
            Err(ExperimentError::BadSeed)
        );
        // An empty seed means the name, as in GrowthBook.
        assert_eq!(spec(&|s| s.seed = Some(Vec::new())).unwrap().seed, b"x");
        assert!(ExperimentError::ArmCount(1)
            .to_string()
            .contains("expected"));
    }

    #[test]
    fn split_matches_growthbook_and_respects_weights() {
        let mut e = ab();
        e.set_weights(&[70.0, 30.0]).unwrap();
        let mut counts = [0usize; 2];
        for i in 0..100_000 {
            let u = format!("u{i}");
            let a = e.split_arm(u.as_bytes()).unwrap();
            assert_eq!(
                Some(a),
                assign::assign(b"hero", u.as_bytes(), HashVersion::V2, 1.0, &[0.7, 0.3])
            );
            counts[a] += 1;
        }
        assert!(
            (counts[0] as f64 / 100_000.0 - 0.7).abs() < 0.01,
            "{counts:?}"
        );
        assert_eq!(e.set_weights(&[1.0]), Err(ExperimentError::BadWeight));
        e.coverage = 0.5;
        let out = (0..10_000)
            .filter(|i| e.split_arm(format!("u{i}").as_bytes()).is_none())
            .count();
        assert!((out as f64 / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn thompson_and_stop() {
        let mut e = ab();
        e.policy = Policy::Thompson;
        e.metric = Metric::Conversion;
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            assert!(e.record(0, ArmEvent::Impression { new_user: false }));
            assert!(e.record(1, ArmEvent::Impression { new_user: false }));
        }
        for _ in 0..100 {
            e.record(1, ArmEvent::Conversion);
            e.record(0, ArmEvent::Click);
        }
        assert_eq!(
            e.bandit_records(),
            vec![ArmRecord::new(0, 1000), ArmRecord::new(100, 900)]
        );
        let picks = (0..100)
            .filter(|_| e.choose(b"u", &mut rng) == Some(1))
            .count();
        assert_eq!(picks, 100);
        assert!(!e.record(5, ArmEvent::Click));

        assert_eq!(e.stop(Some(b"nope")), Err(ExperimentError::UnknownArm));
        e.stop(Some(b"fast")).unwrap();
        assert_eq!(e.choose(b"anyone", &mut rng), Some(1));
        assert!(
            !e.record(1, ArmEvent::Click),
            "nothing is counted once stopped"
        );
        e.stop(None).unwrap();
        assert_eq!(e.choose(b"anyone", &mut rng), Some(0));
    }

    #[test]
    fn stats_report() {
        let mut e = ab();
        for (arm, users, imps, clicks) in [(0, 400, 1000, 50), (1, 410, 1000, 65)] {
            for i in 0..imps {
                e.record(
                    arm,
                    ArmEvent::Impression {
                        new_user: i < users,
                    },
                );
            }
            for _ in 0..clicks {
                e.record(arm, ArmEvent::Click);
            }
        }
        e.record(1, ArmEvent::Conversion);
        let s = e.stats();
        assert_eq!(s.arms.len(), 2);
        let t = &s.arms[1];
        assert_eq!(
            (t.users, t.impressions, t.clicks, t.conversions),
            (410, 1000, 65, 1)
        );
        assert_eq!((t.ctr, t.conversion_rate), (Some(0.065), Some(0.001)));
        // Same counts as abstats' scipy-checked tables.
        assert!((t.stats.chance_to_beat_control.unwrap() - 0.924_480_378_902_564_1).abs() < 1e-7);
        assert!((t.stats.z_pvalue.unwrap() - 0.149_643_106_370_368_5).abs() < 1e-9);
        assert_eq!(s.required_per_arm, Some(31_235));
        assert!(!s.srm && s.srm_pvalue.unwrap() > 0.5);
        assert_eq!(s.verdict_text(), "collecting");

        // A broken split.
        e.arms[1].users = 600;
        assert_eq!(e.stats().verdict_text(), "srm");
        // Bandits are not checked for SRM.
        e.policy = Policy::Thompson;
        assert_eq!(e.stats().srm_pvalue, None);
        // A clear winner, named.
        e.arms[1].clicks = 150;
        assert_eq!(e.stats().verdict_text(), "winner fast");
    }

    fn sample() -> Experiments {
        let mut all = Experiments::default();
        let mut a = ab();
        a.record(0, ArmEvent::Impression { new_user: true });
        a.record(1, ArmEvent::Click);
        a.stop(Some(b"fast")).unwrap();
        all.insert(a, 10).unwrap();
        let mut spec = ExperimentSpec::new(
            b"b.2",
            vec![
                arm("c", "default", 0.2),
                arm("t1", "popular", 0.3),
                arm("t2", "m-x", 0.5),
            ],
        );
        spec.policy = Policy::Thompson;
        spec.seed = Some("séed".as_bytes().to_vec());
        spec.hash_version = HashVersion::V1;
        spec.coverage = 0.25;
        spec.metric = Metric::Conversion;
        spec.mde = 0.05;
        all.insert(Experiment::create(spec).unwrap(), 10).unwrap();
        let mut c = ab();
        c.name = "c".into();
        c.stop(None).unwrap();
        all.insert(c, 10).unwrap();
        all
    }

    #[test]
    fn collection_bounds() {
        let mut all = sample();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.insert(ab(), 10),
            Err(ExperimentError::Exists("hero".into()))
        );
        let mut d = ab();
        d.name = "d".into();
        assert_eq!(all.insert(d, 3), Err(ExperimentError::Full(3)));
        assert!(all.remove("c").is_some());
        assert!(all.remove("c").is_none());
        assert_eq!(
            all.names().cloned().collect::<Vec<_>>(),
            vec!["b.2", "hero"]
        );
        assert!(all.get("hero").is_some() && all.get_mut("b.2").is_some());
        assert!(all.mem_bytes() > 0);
    }

    #[test]
    fn save_load_round_trip_truncation_and_corruption() {
        let all = sample();
        let mut w = Writer::new();
        all.save(&mut w);
        let buf = w.buf;
        let mut r = Reader::new(&buf);
        let back = Experiments::load(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(back, all);
        let mut w2 = Writer::new();
        back.save(&mut w2);
        assert_eq!(w2.buf, buf);
        for cut in 0..buf.len() {
            let mut r = Reader::new(&buf[..cut]);
            assert!(Experiments::load(&mut r).is_err(), "cut at {cut} decoded");
        }
        for i in 0..buf.len() {
            for delta in [0x01u8, 0x5B, 0x80, 0xFF] {
                let mut b = buf.clone();
                b[i] = b[i].wrapping_add(delta);
                let mut r = Reader::new(&b);
                if let Ok(e) = Experiments::load(&mut r) {
                    // Whatever decodes is a valid collection: it re-encodes and reports.
                    for x in e.iter() {
                        assert!(x.validate().is_ok());
                        if i % 5 == 0 {
                            let _ = x.stats();
                        }
                    }
                }
            }
        }
        // Invalid content behind a well-formed encoding is refused too.
        let mut bad = ab();
        bad.arms[1].name = "control".into();
        let mut w = Writer::new();
        bad.save(&mut w);
        assert!(Experiment::load(&mut Reader::new(&w.buf)).is_err());
        let mut bad = ab();
        bad.state = State::Stopped { winner: Some(2) };
        let mut w = Writer::new();
        bad.save(&mut w);
        assert!(Experiment::load(&mut Reader::new(&w.buf)).is_err());
    }
}
