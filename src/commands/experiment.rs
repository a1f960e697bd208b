//! REC.EXPERIMENT.CREATE | GET | LIST | STOP | DEL | STATS, REC.ASSIGN, REC.SAMPLESIZE, and the
//! internal REC._EXPOSE that replicates what REC.GET EXPERIMENT recorded.

use super::{err, map, once, show, Args, CmdError, CmdResult, Reply};
use crate::commands::user::{open_user_writable, with_user, UserSlot};
use crate::config;
use crate::engine::abstats;
use crate::engine::assign::HashVersion;
use crate::engine::experiment::{ArmSpec, Experiment, ExperimentSpec, Metric, Policy, State};
use crate::engine::model::valid_name;
use crate::engine::user::UserState;
use crate::engine::Engine;
use crate::persist::{account_new, engine, USER_TYPE};
use crate::stats;
use redis_module::Context;

fn name_arg<'a>(a: &mut Args<'a>, what: &str) -> Result<&'a str, CmdError> {
    let n = a.arg()?;
    match std::str::from_utf8(n) {
        Ok(s) if valid_name(n) => Ok(s),
        _ => err(format!(
            "bad {what} name '{}' — expected 1 to 64 characters of A-Z a-z 0-9 _ . -",
            show(n)
        )),
    }
}

const CREATE_OPTIONS: &str = "POLICY, SEED, HASHVERSION, COVERAGE, METRIC, MDE or ARMS";

pub fn create(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let name = name_arg(a, "experiment")?;
    let mut spec = ExperimentSpec::new(name.as_bytes(), Vec::new());
    let (mut policy, mut seed, mut hv, mut cov, mut metric, mut mde) =
        (None, None, None, None, None, None);
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "POLICY" => {
                once(&policy, "POLICY")?;
                let v = a.value_of("POLICY")?;
                policy = Some(Policy::from_name(v).ok_or_else(|| {
                    CmdError(format!(
                        "bad POLICY '{}' — expected split or thompson",
                        show(v)
                    ))
                })?);
            }
            "SEED" => {
                once(&seed, "SEED")?;
                seed = Some(a.value_of("SEED")?.to_vec());
            }
            "HASHVERSION" => {
                once(&hv, "HASHVERSION")?;
                let v = a.int("HASHVERSION", 1, 2)?;
                hv = HashVersion::from_number(v as u64);
            }
            "COVERAGE" => {
                once(&cov, "COVERAGE")?;
                cov = Some(a.float("COVERAGE", 0.0, 1.0)?);
            }
            "METRIC" => {
                once(&metric, "METRIC")?;
                let v = a.value_of("METRIC")?;
                metric = Some(Metric::from_name(v).ok_or_else(|| {
                    CmdError(format!(
                        "bad METRIC '{}' — expected click or conversion",
                        show(v)
                    ))
                })?);
            }
            "MDE" => {
                once(&mde, "MDE")?;
                mde = Some(a.float("MDE", 1e-6, 100.0)?);
            }
            "ARMS" => {
                if !spec.arms.is_empty() {
                    return err("ARMS given twice — expected each option at most once");
                }
                if a.remaining() < 3 || !a.remaining().is_multiple_of(3) {
                    return err("bad ARMS — expected ARMS <arm> <model> <weight> [...] at the end");
                }
                while !a.is_done() {
                    let arm = a.arg()?.to_vec();
                    let model = a.arg()?.to_vec();
                    let w = a.float("weight", 0.0, 1e6)?;
                    spec.arms.push(ArmSpec {
                        name: arm,
                        model,
                        weight: w,
                    });
                }
            }
            _ => return Err(super::unknown_option(&kw, CREATE_OPTIONS)),
        }
    }
    if spec.arms.is_empty() {
        return err("ARMS missing — expected ARMS <arm> <model> <weight> [...]");
    }
    spec.policy = policy.unwrap_or(Policy::Split);
    spec.seed = seed;
    spec.hash_version = hv.unwrap_or(HashVersion::V2);
    spec.coverage = cov.unwrap_or(1.0);
    spec.metric = metric.unwrap_or(Metric::Click);
    if let Some(m) = mde {
        spec.mde = m;
    }
    let mut e = engine();
    for arm in &spec.arms {
        let model = String::from_utf8_lossy(&arm.model);
        if e.model(&model).is_none() {
            return err(format!(
                "no such model '{}' for arm '{}' — expected a model from REC.MODEL.LIST",
                show(&arm.model),
                show(&arm.name)
            ));
        }
    }
    let new = Experiment::create(spec).map_err(|x| CmdError(x.to_string()))?;
    // Re-creating with the same arms and models updates weights and coverage, keeping the
    // counters; exposed split users keep their arm.
    let created = match e.experiments.get_mut(name) {
        Some(old) => {
            let same_arms = old.arms.len() == new.arms.len()
                && old
                    .arms
                    .iter()
                    .zip(&new.arms)
                    .all(|(x, y)| x.name == y.name && x.model == y.model);
            if !same_arms
                || old.policy != new.policy
                || old.seed != new.seed
                || old.hash_version != new.hash_version
            {
                return err(format!(
                    "experiment '{name}' exists with other arms, policy, seed or hash version — \
                     expected the same to change weights and coverage, or REC.EXPERIMENT.DEL first"
                ));
            }
            old.set_weights(&new.weights())
                .map_err(|x| CmdError(x.to_string()))?;
            old.coverage = new.coverage;
            old.mde = new.mde;
            old.metric = new.metric;
            false
        }
        None => {
            let max = config::get(&config::MAX_EXPERIMENTS);
            e.add_experiment(new, max)
                .map_err(|x| CmdError(x.to_string()))?;
            true
        }
    };
    drop(e);
    stats::mark_model_change(super::now_ms());
    ctx.replicate_verbatim();
    Ok(Reply::Int(i64::from(created)))
}

fn experiment_reply(x: &Experiment) -> Reply {
    let arms = x
        .arms
        .iter()
        .map(|a| {
            map(vec![
                ("name", Reply::str(&a.name)),
                ("model", Reply::str(&a.model)),
                ("weight", Reply::Double(a.weight)),
            ])
        })
        .collect();
    let (state, winner) = match x.state {
        State::Running => ("running", Reply::Null),
        State::Stopped { winner } => (
            "stopped",
            winner
                .and_then(|w| x.arms.get(w))
                .map_or(Reply::Null, |a| Reply::str(&a.name)),
        ),
    };
    map(vec![
        ("name", Reply::str(&x.name)),
        ("policy", Reply::str(x.policy.name())),
        ("seed", Reply::Bulk(x.seed.clone())),
        (
            "hashversion",
            Reply::Int(i64::from(x.hash_version.number())),
        ),
        ("coverage", Reply::Double(x.coverage)),
        ("metric", Reply::str(x.metric.name())),
        ("mde", Reply::Double(x.mde)),
        ("state", Reply::str(state)),
        ("winner", winner),
        ("arms", Reply::Array(arms)),
    ])
}

fn only_name<'a>(a: &mut Args<'a>) -> Result<&'a str, CmdError> {
    a.need(1)?;
    let name = name_arg(a, "experiment")?;
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    Ok(name)
}

pub fn get(_ctx: &Context, a: &mut Args) -> CmdResult {
    let name = only_name(a)?;
    Ok(engine()
        .experiments
        .get(name)
        .map_or(Reply::Null, experiment_reply))
}

pub fn list(_ctx: &Context, a: &mut Args) -> CmdResult {
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    Ok(Reply::Array(
        engine()
            .experiments
            .names()
            .map(|n| Reply::str(n))
            .collect(),
    ))
}

pub fn del(ctx: &Context, a: &mut Args) -> CmdResult {
    let name = only_name(a)?;
    let removed = engine().experiments.remove(name).is_some();
    if removed {
        stats::mark_model_change(super::now_ms());
        ctx.replicate_verbatim();
    }
    Ok(Reply::Int(i64::from(removed)))
}

pub fn stop(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let name = name_arg(a, "experiment")?;
    let mut winner = None;
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "WINNER" => {
                once(&winner, "WINNER")?;
                winner = Some(a.value_of("WINNER")?);
            }
            _ => return Err(super::unknown_option(&kw, "WINNER")),
        }
    }
    let mut e = engine();
    let Some(x) = e.experiments.get_mut(name) else {
        return err(format!(
            "no such experiment '{name}' — expected one of REC.EXPERIMENT.LIST"
        ));
    };
    x.stop(winner).map_err(|x| CmdError(x.to_string()))?;
    drop(e);
    stats::mark_model_change(super::now_ms());
    ctx.replicate_verbatim();
    Ok(Reply::Ok)
}

fn opt(v: Option<f64>) -> Reply {
    v.filter(|x| x.is_finite())
        .map_or(Reply::Null, Reply::Double)
}

pub fn stats_cmd(_ctx: &Context, a: &mut Args) -> CmdResult {
    let name = only_name(a)?;
    let e = engine();
    let Some(x) = e.experiments.get(name) else {
        return err(format!(
            "no such experiment '{name}' — expected one of REC.EXPERIMENT.LIST"
        ));
    };
    let s = x.stats();
    let arms = s
        .arms
        .iter()
        .zip(&x.arms)
        .map(|(arm, raw)| {
            let st = &arm.stats;
            let (lift, lift_ci) = match &st.lift {
                Some(l) => (
                    Reply::Double(l.estimate),
                    Reply::Array(vec![Reply::Double(l.low), Reply::Double(l.high)]),
                ),
                None => (Reply::Null, Reply::Null),
            };
            map(vec![
                ("arm", Reply::str(&arm.name)),
                ("model", Reply::str(&arm.model)),
                ("weight", Reply::Double(arm.weight)),
                ("users", Reply::Int(arm.users as i64)),
                ("impressions", Reply::Int(arm.impressions as i64)),
                ("clicks", Reply::Int(arm.clicks as i64)),
                ("conversions", Reply::Int(arm.conversions as i64)),
                ("ctr", opt(arm.ctr)),
                ("conversion_rate", opt(arm.conversion_rate)),
                ("posterior_mean", Reply::Double(st.posterior_mean)),
                (
                    "credible_interval",
                    Reply::Array(vec![
                        Reply::Double(st.credible_low),
                        Reply::Double(st.credible_high),
                    ]),
                ),
                ("chance_to_beat_control", opt(st.chance_to_beat_control)),
                ("prob_best", Reply::Double(st.prob_best)),
                ("lift", lift),
                ("lift_ci", lift_ci),
                ("z_pvalue", opt(st.z_pvalue)),
                ("sequential_pvalue", opt(st.sequential_pvalue)),
                (
                    "positions",
                    Reply::Array(
                        raw.positions
                            .iter()
                            .map(|p| {
                                Reply::Array(vec![Reply::Int(p[0] as i64), Reply::Int(p[1] as i64)])
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    Ok(map(vec![
        ("experiment", Reply::str(&s.name)),
        ("policy", Reply::str(s.policy.name())),
        ("metric", Reply::str(s.metric.name())),
        ("state", Reply::str(s.state.name())),
        ("verdict", Reply::str(&s.verdict_text())),
        ("srm_pvalue", opt(s.srm_pvalue)),
        ("srm", Reply::Int(i64::from(s.srm))),
        (
            "required_per_arm",
            s.required_per_arm
                .map_or(Reply::Null, |n| Reply::Int(n as i64)),
        ),
        ("arms", Reply::Array(arms)),
    ]))
}

/// REC.ASSIGN <exp> <user>: the arm serving the user now, or nil outside the coverage.
pub fn assign(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(2)?;
    let name = name_arg(a, "experiment")?;
    let user = a.id("user")?;
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    let e = engine();
    let Some(x) = e.experiments.get(name) else {
        return err(format!(
            "no such experiment '{name}' — expected one of REC.EXPERIMENT.LIST"
        ));
    };
    let arm = with_user(ctx, user, |u| x.arm_for(user, u, &mut rand::thread_rng()))?;
    Ok(arm
        .and_then(|i| x.arms.get(i))
        .map_or(Reply::Null, |arm| Reply::str(&arm.name)))
}

/// REC.SAMPLESIZE <baseline> <mde> [ALPHA a] [POWER p]
pub fn samplesize(_ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(2)?;
    let baseline = super::parse_float("baseline", a.arg()?, 1e-9, 1.0 - 1e-9)?;
    let mde = super::parse_float("mde", a.arg()?, 1e-9, 1e3)?;
    let (mut alpha, mut power) = (None, None);
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "ALPHA" => {
                once(&alpha, "ALPHA")?;
                alpha = Some(a.float("ALPHA", 1e-9, 0.5)?);
            }
            "POWER" => {
                once(&power, "POWER")?;
                power = Some(a.float("POWER", 0.01, 1.0 - 1e-9)?);
            }
            _ => return Err(super::unknown_option(&kw, "ALPHA or POWER")),
        }
    }
    let n = abstats::sample_size(baseline, mde, alpha.unwrap_or(0.05), power.unwrap_or(0.8))
        .map_err(|x| CmdError(x.to_string()))?;
    Ok(Reply::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

/// Records an exposure on the user's state (creating it if needed). Shared by REC.GET
/// EXPERIMENT on the primary and REC._EXPOSE on replicas and in the AOF.
pub fn record_exposure(
    ctx: &Context,
    user: &[u8],
    experiment: &str,
    arm: usize,
    ts: i64,
    items: &[&[u8]],
) -> Result<Option<i64>, CmdError> {
    let max_served = config::get(&config::SERVED_LISTS);
    let mut slot = open_user_writable(ctx, user)?;
    let mut e = engine();
    let counted = match &mut slot {
        UserSlot::Existing(_, state) => {
            let before = state.mem_bytes();
            let ts = Engine::exposure_ts(state, ts);
            let c = e.expose(state, experiment, arm, ts, items, max_served);
            stats::add_user_bytes(state.mem_bytes() as i64 - before as i64);
            c.then_some(ts)
        }
        UserSlot::Empty(key) => {
            let mut state = UserState::default();
            let c = e.expose(&mut state, experiment, arm, ts, items, max_served);
            if c {
                account_new(&state);
                key.set_value(&USER_TYPE, state)?;
            }
            c.then_some(ts)
        }
    };
    Ok(counted)
}

/// REC._EXPOSE <user> <exp> <arm> <ts> [item ...]
pub fn expose(ctx: &Context, a: &mut Args) -> CmdResult {
    super::internal_only(ctx, "REC._EXPOSE")?;
    a.need(4)?;
    let user = a.id("user")?;
    let name = name_arg(a, "experiment")?;
    let arm_name = a.arg()?;
    let ts = super::parse_int("ts", a.arg()?, 0, i64::MAX)?;
    let mut items = Vec::new();
    while !a.is_done() {
        items.push(a.id("item")?);
    }
    let arm = engine()
        .experiments
        .get(name)
        .and_then(|x| x.arm_index(arm_name));
    let Some(arm) = arm else {
        return err("no such experiment or arm — expected a running experiment's arm");
    };
    record_exposure(ctx, user, name, arm, ts, &items)?;
    ctx.replicate_verbatim();
    Ok(Reply::Ok)
}
