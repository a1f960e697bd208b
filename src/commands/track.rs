//! REC.TRACK <user> <item> <action> [VALUE <v>] [TS <unix-ms>] [REC <rec-id>]

use super::{err, now_ms, once, show, unknown_option, Args, CmdError, CmdResult, Reply};
use crate::cache;
use crate::commands::user::{open_user_writable, UserSlot};
use crate::config;
use crate::engine::actions::ActionKind;
use crate::engine::experiment::ArmEvent;
use crate::engine::exposure::RecRef;
use crate::engine::model::valid_name;
use crate::engine::TrackInput;
use crate::persist::engine;
use crate::stats;
use redis_module::Context;

/// Latest accepted event time, relative to the clock: one day ahead.
const MAX_FUTURE_MS: i64 = 86_400_000;
/// Largest accepted timestamp (year 9999).
const MAX_TS: i64 = 253_402_300_799_999;

/// A rec id as REC.GET hands it out: `r1:<unix-ms>:<model>[:<experiment>:<arm>]`.
pub struct RecId<'a> {
    pub ts: i64,
    pub model: &'a str,
    pub experiment: Option<(&'a str, &'a str)>,
}

pub fn parse_rec_id(v: &[u8]) -> Option<RecId<'_>> {
    let s = std::str::from_utf8(v).ok()?;
    let parts: Vec<&str> = s.split(':').collect();
    let (ts, model, experiment) = match parts.as_slice() {
        ["r1", ts, model] => (ts, model, None),
        ["r1", ts, model, exp, arm] => (ts, model, Some((*exp, *arm))),
        _ => return None,
    };
    let ts: i64 = ts.parse().ok()?;
    let names_ok = valid_name(model.as_bytes())
        && experiment.is_none_or(|(e, a)| valid_name(e.as_bytes()) && valid_name(a.as_bytes()));
    (ts >= 0 && names_ok).then_some(RecId {
        ts,
        model,
        experiment,
    })
}

pub fn track(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(3)?;
    let user = a.id("user")?;
    let item = a.id("item")?;
    let action_name = a.arg()?;
    let table = config::ACTION_WEIGHTS.value();
    let Some(action) = table.find_ignore_case(action_name) else {
        return err(format!(
            "unknown action '{}' — expected one of {} (rec.action-weights)",
            show(action_name),
            table.names()
        ));
    };
    let (mut value, mut ts, mut rec) = (None, None, None);
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "VALUE" => {
                once(&value, "VALUE")?;
                value = Some(a.float("VALUE", 0.0, 1e6)?);
            }
            "TS" => {
                once(&ts, "TS")?;
                ts = Some(a.int("TS", 0, MAX_TS)?);
            }
            "REC" => {
                once(&rec, "REC")?;
                let r = a.value_of("REC")?;
                if parse_rec_id(r).is_none() {
                    return err(format!(
                        "bad REC '{}' — expected a rec_id returned by REC.GET",
                        show(r)
                    ));
                }
                rec = Some(r);
            }
            _ => return Err(unknown_option(&kw, "VALUE, TS or REC")),
        }
    }
    let now = now_ms();
    let from_primary = super::from_primary(ctx);
    let ts = match ts {
        Some(t) if !from_primary && t > now.saturating_add(MAX_FUTURE_MS) => {
            return err(format!(
                "TS {t} is more than a day in the future — expected a Unix time in milliseconds"
            ))
        }
        Some(t) => t,
        None => now,
    };
    action.event_weight(value).map_err(CmdError)?;

    let settings = config::settings();
    let input = TrackInput {
        item,
        action,
        value,
        ts,
    };
    // Clicks and purchases are attributed to the experiment arm that served the item.
    let arm_event = if action.name == "click" {
        Some(ArmEvent::Click)
    } else if action.kind == ActionKind::Purchase {
        Some(ArmEvent::Conversion)
    } else {
        None
    };
    let rec_id = rec.and_then(parse_rec_id);
    let window_ms = config::get(&config::ATTRIBUTION_WINDOW) as i64 * 1000;
    let mut slot = open_user_writable(ctx, user)?;
    let mut eng = engine();
    match &mut slot {
        UserSlot::Existing(_, state) => {
            let before = state.mem_bytes();
            eng.track(state, &input, &settings)
                .map_err(|e| CmdError(e.to_string()))?;
            stats::add_user_bytes(state.mem_bytes() as i64 - before as i64);
            // A rec id from a list no experiment served attributes to no arm.
            let plain_rec = rec_id.as_ref().is_some_and(|r| r.experiment.is_none());
            if let (Some(ev), false) = (arm_event, plain_rec) {
                let r = rec_id.as_ref().and_then(|r| {
                    r.experiment.map(|(experiment, arm)| RecRef {
                        ts: r.ts,
                        experiment,
                        arm,
                    })
                });
                eng.attribute(state, item, ev, ts, r, window_ms);
            }
        }
        UserSlot::Empty(key) => {
            let mut state = Default::default();
            eng.track(&mut state, &input, &settings)
                .map_err(|e| CmdError(e.to_string()))?;
            eng.users_seen += 1;
            crate::persist::account_new(&state);
            key.set_value(&crate::persist::USER_TYPE, state)?;
        }
    }
    drop(eng);
    stats::record_event(&action.name);
    // REC <rec-id>: a click or conversion on a recommendation of that model.
    if let (Some(RecId { model, .. }), true) = (rec_id, stats::enabled()) {
        let mut q = crate::quality::quality();
        if action.name == "click" {
            q.record_click(model);
        } else if action.kind == ActionKind::Purchase {
            q.record_conversion(model);
        }
    }

    // Purchases and dislikes always invalidate (they change what may be shown); so do the
    // actions in rec.invalidating-actions. Replicas run the same when they apply this command.
    let invalidating = matches!(action.kind, ActionKind::Purchase | ActionKind::Dislike)
        || config::INVALIDATING_ACTIONS
            .value()
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(action.name.as_bytes()));
    if invalidating {
        let ckey = cache::cache_key(user);
        if cache::drop_user(ctx, &ckey) > 0 {
            cache::bump(&cache::STATS.inval_event);
        }
    }

    // Replicate the effect: always with the timestamp this node used.
    let ts_s = ts.to_string();
    let value_s = value.map(|v| v.to_string());
    let mut out: Vec<&[u8]> = vec![user, item, action.name.as_bytes()];
    if let Some(v) = &value_s {
        out.extend_from_slice(&[b"VALUE", v.as_bytes()]);
    }
    out.extend_from_slice(&[b"TS", ts_s.as_bytes()]);
    if let Some(r) = rec {
        out.extend_from_slice(&[b"REC", r]);
    }
    ctx.replicate("REC.TRACK", &out[..]);

    // rec.user-ttl: idle users expire. The primary picks the absolute time and replicates it.
    let user_ttl_ms = config::get(&config::USER_TTL) as i64 * 1000;
    if user_ttl_ms > 0 && !from_primary {
        let key = match &slot {
            UserSlot::Existing(k, _) | UserSlot::Empty(k) => k,
        };
        let at = now.saturating_add(user_ttl_ms);
        key.set_expire(std::time::Duration::from_millis(user_ttl_ms as u64))?;
        let name = crate::commands::user::user_key_name(ctx, user);
        let at_s = at.to_string();
        ctx.replicate("PEXPIREAT", &[name.as_slice(), at_s.as_bytes()][..]);
    }
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rec_ids() {
        let r = parse_rec_id(b"r1:123:default").unwrap();
        assert_eq!((r.ts, r.model, r.experiment), (123, "default", None));
        let r = parse_rec_id(b"r1:5:m:exp:arm").unwrap();
        assert_eq!(r.experiment, Some(("exp", "arm")));
        assert!(parse_rec_id(b"r1:5:m:exp").is_none());
        assert!(parse_rec_id(b"r2:1:default").is_none());
        assert!(parse_rec_id(b"r1:x:default").is_none());
        assert!(parse_rec_id(b"r1:1:").is_none());
        assert!(parse_rec_id(b"r1:-1:m").is_none());
        assert!(parse_rec_id(b"\xff").is_none());
    }
}
