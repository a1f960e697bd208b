//! REC.GET, REC.GET_RO, REC.SIMILAR, REC.POPULAR

use super::{err, map, now_ms, once, score_map, show, Args, CmdError, CmdResult, Reply};
use crate::cache;
use crate::commands::experiment::record_exposure;
use crate::commands::user::with_user;
use crate::config;
use crate::engine::cache::{
    jittered_ttl_ms, shape_key, should_refresh_early, CachedList, Staleness,
};
use crate::engine::model::{valid_name, DEFAULT_MODEL, POPULAR_MODEL};
use crate::engine::ranking::RecRequest;
use crate::persist::engine;
use crate::quality;
use crate::stats;
use redis_module::Context;
use std::sync::Arc;
use std::time::Instant;

const GET_KEYWORDS: [&str; 9] = [
    "COUNT",
    "MODEL",
    "EXPERIMENT",
    "CATEGORY",
    "EXCLUDE",
    "MAXPERCATEGORY",
    "WITHSCORES",
    "WITHREASONS",
    "NOCACHE",
];

fn is_keyword(v: &[u8]) -> bool {
    GET_KEYWORDS
        .iter()
        .any(|k| k.as_bytes().eq_ignore_ascii_case(v))
}

/// REC.GET's options, parsed and validated.
#[derive(Default)]
struct GetOptions<'a> {
    count: Option<usize>,
    model: Option<&'a [u8]>,
    experiment: Option<&'a [u8]>,
    category: Option<&'a [u8]>,
    exclude: Vec<&'a [u8]>,
    max_per_category: Option<usize>,
    with_scores: bool,
    with_reasons: bool,
    no_cache: bool,
}

fn parse_get<'a>(a: &mut Args<'a>) -> Result<GetOptions<'a>, CmdError> {
    let mut o = GetOptions::default();
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "COUNT" => {
                once(&o.count, "COUNT")?;
                o.count = Some(a.count()?);
            }
            "MODEL" => {
                once(&o.model, "MODEL")?;
                o.model = Some(a.value_of("MODEL")?);
            }
            "EXPERIMENT" => {
                once(&o.experiment, "EXPERIMENT")?;
                o.experiment = Some(a.value_of("EXPERIMENT")?);
            }
            "CATEGORY" => {
                once(&o.category, "CATEGORY")?;
                let c = a.value_of("CATEGORY")?;
                super::check_id("category", c)?;
                o.category = Some(c);
            }
            "EXCLUDE" => {
                let first = a.value_of("EXCLUDE")?;
                o.exclude.push(first);
                while let Some(v) = a.peek() {
                    if is_keyword(v) {
                        break;
                    }
                    o.exclude.push(a.arg()?);
                }
                if o.exclude.len() > 1000 {
                    return err("too many EXCLUDE items — expected at most 1000");
                }
            }
            "MAXPERCATEGORY" => {
                once(&o.max_per_category, "MAXPERCATEGORY")?;
                o.max_per_category = Some(a.int("MAXPERCATEGORY", 0, 1000)? as usize);
            }
            "WITHSCORES" => o.with_scores = true,
            "WITHREASONS" => o.with_reasons = true,
            "NOCACHE" => o.no_cache = true,
            _ => return Err(super::unknown_option(&kw, &GET_KEYWORDS.join(", "))),
        }
    }
    if o.model.is_some() && o.experiment.is_some() {
        return err("MODEL and EXPERIMENT both given — expected one of them");
    }
    Ok(o)
}

fn recommend(ctx: &Context, a: &mut Args, read_only: bool) -> CmdResult {
    a.need(1)?;
    let user = a.id("user")?;
    let o = parse_get(a)?;
    let e = engine();
    // With EXPERIMENT, the arm serving this user chooses the model; users outside the
    // coverage see the control's model and are not counted.
    let mut exposure: Option<(String, usize, String, bool)> = None;
    let arm_model: Option<String> = match o.experiment {
        Some(x) => {
            let exp = std::str::from_utf8(x)
                .ok()
                .and_then(|n| e.experiments.get(n))
                .ok_or_else(|| {
                    CmdError(format!(
                        "no such experiment '{}' — expected a name created with REC.EXPERIMENT.CREATE",
                        show(x)
                    ))
                })?;
            let arm = with_user(ctx, user, |u| exp.arm_for(user, u, &mut rand::thread_rng()))?;
            let chosen = arm.and_then(|i| exp.arms.get(i).map(|a| (i, a)));
            if let Some((i, a)) = chosen {
                exposure = Some((exp.name.clone(), i, a.name.clone(), exp.is_running()));
            }
            chosen
                .map(|(_, a)| a)
                .or_else(|| exp.arms.first())
                .map(|a| a.model.clone())
        }
        None => None,
    };
    let model_name = match (&arm_model, o.model) {
        // An arm whose model was deleted falls back to popularity rather than failing.
        (Some(m), _) => Some(if e.model(m).is_some() {
            m.as_str()
        } else {
            POPULAR_MODEL
        }),
        (None, Some(m)) => std::str::from_utf8(m).ok().filter(|_| valid_name(m)),
        (None, None) => Some(DEFAULT_MODEL),
    };
    let Some((model_name, model)) = model_name.and_then(|n| Some((n, e.model(n)?))) else {
        return err(format!(
            "no such model '{}' — expected one of REC.MODEL.LIST",
            show(o.model.unwrap_or_default())
        ));
    };
    let s = config::settings();
    let req = RecRequest {
        count: o.count.unwrap_or(10),
        model_name,
        model,
        category: o.category,
        exclude: &o.exclude,
        max_per_category: o
            .max_per_category
            .unwrap_or_else(|| config::get(&config::MAX_PER_CATEGORY)),
    };
    let ttl_ms = config::get(&config::CACHE_TTL) as i64 * 1000;
    let caching = ttl_ms > 0;
    let ckey = cache::cache_key(user);
    let shape = shape_key(
        req.count,
        model_name,
        req.category,
        req.exclude,
        req.max_per_category,
    );
    let now = now_ms();

    let mut served: Option<(Arc<CachedList>, &str)> = None;
    let mut refreshing = false;
    if caching && !o.no_cache {
        if let Some(l) = cache::l1_get(&ckey, &shape) {
            if servable(&l, &e, now) {
                served = Some((l, "l1"));
            }
        }
        if served.is_none() {
            if let Some(l) = cache::l2_get(ctx, &super::binary_string(ctx, &ckey), &shape) {
                if servable(&l, &e, now) {
                    let l = Arc::new(l);
                    cache::l1_put(&ckey, &shape, l.clone());
                    served = Some((l, "l2"));
                }
            }
        }
        // XFetch: a hit close to expiry is recomputed early, with rising probability.
        if let Some((l, _)) = &served {
            let beta = *config::CACHE_BETA.value();
            let delta_ms = l.delta_us as f64 / 1000.0;
            if !read_only
                && should_refresh_early(now, l.expiry_ms, delta_ms, beta, 1.0 - cache::uniform())
            {
                cache::bump(&cache::STATS.early_refreshes);
                refreshing = true;
                served = None;
            }
        }
    }
    let (list, source) = match served {
        Some((l, src)) => {
            cache::bump(if src == "l1" {
                &cache::STATS.l1_hits
            } else {
                &cache::STATS.l2_hits
            });
            (l, src)
        }
        None => {
            if caching && !o.no_cache && !refreshing {
                cache::bump(&cache::STATS.misses);
            }
            let t0 = Instant::now();
            let computed = with_user(ctx, user, |u| e.recommend(u, &req, &s))?;
            let delta_us = t0.elapsed().as_micros() as u64;
            let jitter = *config::CACHE_JITTER.value();
            let expiry = now + jittered_ttl_ms(ttl_ms, jitter, cache::uniform());
            let l = Arc::new(CachedList::capture(
                &e, &computed, model_name, now, expiry, delta_us,
            ));
            // REC.GET_RO never writes a key; it may keep the list in this node's own L1
            // (process memory that replicated invalidations and stamps keep honest).
            if caching {
                if !read_only {
                    cache::l2_put(ctx, &ckey, &shape, &l);
                }
                cache::l1_put(&ckey, &shape, l.clone());
            }
            (l, "computed")
        }
    };
    if stats::enabled() {
        // Coverage needs the ids only when a list is new to this node's L1 (computed, or read
        // from L2): an L1 hit holds items counted when it was filled, within its TTL.
        let fresh = source != "l1";
        let ids: Vec<&[u8]> = if fresh {
            list.items.iter().map(|r| &*r.id).collect()
        } else {
            Vec::new()
        };
        quality::quality().record_list(
            &list.model,
            list.items.iter().map(|r| r.category.as_deref()),
            list.diversity,
            fresh.then_some(ids.as_slice()),
            now,
            config::get(&config::QUALITY_WINDOW) as i64 * 1000,
            config::get(&config::MAX_ITEMS),
        );
    }
    drop(e);
    let mut served_at = now;
    if let Some((exp, arm, arm_name, true)) = &exposure {
        if !read_only {
            let ids: Vec<&[u8]> = list.items.iter().map(|r| &*r.id).collect();
            // The exposure time is unique per user, so the rec id names exactly one list.
            if let Some(ts) = record_exposure(ctx, user, exp, *arm, now, &ids)? {
                served_at = ts;
                let ts_s = ts.to_string();
                let mut out: Vec<&[u8]> =
                    vec![user, exp.as_bytes(), arm_name.as_bytes(), ts_s.as_bytes()];
                out.extend_from_slice(&ids);
                ctx.replicate("REC._EXPOSE", &out[..]);
            }
        }
    }
    let items = list
        .items
        .iter()
        .map(|r| {
            if !o.with_scores && !o.with_reasons {
                return Reply::Bulk(r.id.to_vec());
            }
            let mut f = vec![("id", Reply::Bulk(r.id.to_vec()))];
            if o.with_scores {
                f.push(("score", Reply::Double(r.score)));
            }
            if o.with_reasons {
                f.push(("reason", Reply::Bulk(r.reason.to_vec())));
            }
            map(f)
        })
        .collect();
    let mut rec_id = format!("r1:{served_at}:{}", list.model);
    let mut fields = vec![
        ("items", Reply::Array(items)),
        ("cached", Reply::Int(i64::from(source != "computed"))),
        ("source", Reply::str(source)),
        ("model", Reply::str(&list.model)),
    ];
    if let Some((exp, _, arm_name, _)) = &exposure {
        fields.push(("arm", Reply::str(arm_name)));
        rec_id = format!("{rec_id}:{exp}:{arm_name}");
    }
    fields.push(("rec_id", Reply::str(&rec_id)));
    Ok(map(fields))
}

/// A cached list may be served if it has not expired and nothing it depends on changed.
fn servable(l: &CachedList, e: &crate::engine::Engine, now: i64) -> bool {
    if now >= l.expiry_ms {
        return false;
    }
    match l.is_current(e) {
        Staleness::Current => true,
        Staleness::Item => {
            cache::bump(&cache::STATS.stale_item);
            false
        }
        Staleness::Model => {
            cache::bump(&cache::STATS.stale_model);
            false
        }
        Staleness::Epoch => {
            cache::bump(&cache::STATS.stale_epoch);
            false
        }
    }
}

pub fn get(ctx: &Context, a: &mut Args) -> CmdResult {
    recommend(ctx, a, false)
}

/// The read-only variant: reads L1 and L2, never writes a key, so it runs on replicas.
pub fn get_ro(ctx: &Context, a: &mut Args) -> CmdResult {
    recommend(ctx, a, true)
}

/// COUNT and WITHSCORES, shared by REC.SIMILAR and REC.POPULAR (which also takes CATEGORY).
fn parse_list_options<'a>(
    a: &mut Args<'a>,
    allow_category: bool,
) -> Result<(usize, Option<&'a [u8]>, bool), CmdError> {
    let (mut count, mut category, mut with_scores) = (None, None, false);
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "COUNT" => {
                once(&count, "COUNT")?;
                count = Some(a.count()?);
            }
            "CATEGORY" if allow_category => {
                once(&category, "CATEGORY")?;
                let c = a.value_of("CATEGORY")?;
                super::check_id("category", c)?;
                category = Some(c);
            }
            "WITHSCORES" => with_scores = true,
            _ => {
                let expected = if allow_category {
                    "COUNT, CATEGORY or WITHSCORES"
                } else {
                    "COUNT or WITHSCORES"
                };
                return Err(super::unknown_option(&kw, expected));
            }
        }
    }
    Ok((count.unwrap_or(10), category, with_scores))
}

pub fn similar(_ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let item = a.id("item")?;
    let (count, _, with_scores) = parse_list_options(a, false)?;
    let list = engine().similar(item, count);
    Ok(score_map(list, with_scores))
}

pub fn popular(_ctx: &Context, a: &mut Args) -> CmdResult {
    let (count, category, with_scores) = parse_list_options(a, true)?;
    let list = engine().popular(count, category, &config::settings());
    Ok(score_map(list, with_scores))
}
