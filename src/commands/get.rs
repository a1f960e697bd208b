//! REC.GET, REC.GET_RO, REC.SIMILAR, REC.POPULAR

use super::{err, map, now_ms, once, score_map, show, Args, CmdError, CmdResult, Reply};
use crate::commands::user::with_user;
use crate::config;
use crate::engine::model::{valid_name, DEFAULT_MODEL};
use crate::engine::ranking::RecRequest;
use crate::persist::engine;
use redis_module::Context;

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

fn recommend(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let user = a.id("user")?;
    let o = parse_get(a)?;
    let e = engine();
    if let Some(x) = o.experiment {
        return err(format!(
            "no such experiment '{}' — expected a name created with REC.EXPERIMENT.CREATE",
            show(x)
        ));
    }
    let model_name = match o.model {
        Some(m) => std::str::from_utf8(m).ok().filter(|_| valid_name(m)),
        None => Some(DEFAULT_MODEL),
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
    let list = with_user(ctx, user, |u| e.recommend(u, &req, &s))?;
    drop(e);
    let _ = o.no_cache; // every list is computed in this release
    let items = list
        .items
        .into_iter()
        .map(|r| {
            if !o.with_scores && !o.with_reasons {
                return Reply::Bulk(r.id);
            }
            let mut f = vec![("id", Reply::Bulk(r.id))];
            if o.with_scores {
                f.push(("score", Reply::Double(r.score)));
            }
            if o.with_reasons {
                f.push(("reason", Reply::Bulk(r.reason.render())));
            }
            map(f)
        })
        .collect();
    let rec_id = format!("r1:{}:{}", now_ms(), list.model);
    Ok(map(vec![
        ("items", Reply::Array(items)),
        ("cached", Reply::Int(0)),
        ("source", Reply::str("computed")),
        ("model", Reply::str(&list.model)),
        ("rec_id", Reply::str(&rec_id)),
    ]))
}

pub fn get(ctx: &Context, a: &mut Args) -> CmdResult {
    recommend(ctx, a)
}

pub fn get_ro(ctx: &Context, a: &mut Args) -> CmdResult {
    recommend(ctx, a)
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
