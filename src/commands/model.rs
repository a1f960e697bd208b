//! REC.MODEL.SET | GET | LIST | DEL

use super::{err, map, once, show, Args, CmdError, CmdResult, Reply};
use crate::config;
use crate::engine::model::{is_builtin, valid_name, ModelUpdate, POPULAR_MODEL};
use crate::persist::engine;
use redis_module::Context;

fn model_name<'a>(a: &mut Args<'a>) -> Result<&'a str, CmdError> {
    let n = a.arg()?;
    match std::str::from_utf8(n) {
        Ok(s) if valid_name(n) => Ok(s),
        _ => err(format!(
            "bad model name '{}' — expected 1 to 64 characters of A-Z a-z 0-9 _ . -",
            show(n)
        )),
    }
}

pub fn model_set(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let name = model_name(a)?;
    let mut up = ModelUpdate::default();
    while !a.is_done() {
        let kw = a.keyword()?;
        match kw.as_str() {
            "COOC" => {
                once(&up.cooc, "COOC")?;
                up.cooc = Some(a.float("COOC", 0.0, 1e6)?);
            }
            "AFFINITY" => {
                once(&up.affinity, "AFFINITY")?;
                up.affinity = Some(a.float("AFFINITY", 0.0, 1e6)?);
            }
            "POPULARITY" => {
                once(&up.popularity, "POPULARITY")?;
                up.popularity = Some(a.float("POPULARITY", 0.0, 1e6)?);
            }
            "RECENCY" => {
                once(&up.recency_s, "RECENCY")?;
                let r = a.float("RECENCY", 0.001, 3.2e9)?;
                up.recency_s = Some(r);
            }
            _ => {
                return Err(super::unknown_option(
                    &kw,
                    "COOC, AFFINITY, POPULARITY or RECENCY",
                ))
            }
        }
    }
    if name == POPULAR_MODEL {
        return err("model 'popular' is built in and read-only — expected another name");
    }
    let mut e = engine();
    let max = config::get(&config::MAX_MODELS);
    if !e.models.contains(name) && e.models.len() >= max {
        return err(format!(
            "too many models ({max}) — expected REC.MODEL.DEL first, or a larger rec.max-models"
        ));
    }
    let created = e.model_set(name, up);
    drop(e);
    crate::stats::mark_model_change(super::now_ms());
    ctx.replicate_verbatim();
    Ok(Reply::Int(i64::from(created)))
}

pub fn model_get(_ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let name = model_name(a)?;
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    let Some(m) = engine().model(name) else {
        return Ok(Reply::Null);
    };
    Ok(map(vec![
        ("name", Reply::str(name)),
        ("cooc", Reply::Double(m.cooc)),
        ("affinity", Reply::Double(m.affinity)),
        ("popularity", Reply::Double(m.popularity)),
        ("recency", Reply::Double(m.recency_s)),
        ("builtin", Reply::Int(i64::from(is_builtin(name)))),
    ]))
}

pub fn model_list(_ctx: &Context, a: &mut Args) -> CmdResult {
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    let e = engine();
    Ok(Reply::Array(
        e.models.names().map(|n| Reply::str(n)).collect(),
    ))
}

pub fn model_del(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(1)?;
    let name = model_name(a)?;
    if !a.is_done() {
        return Err(super::arity_error(&a.name()));
    }
    if is_builtin(name) {
        return err(format!(
            "model '{name}' is built in and cannot be deleted — expected a model created with REC.MODEL.SET"
        ));
    }
    let removed = engine().models.remove(name);
    if removed {
        crate::stats::mark_model_change(super::now_ms());
        ctx.replicate_verbatim();
    }
    Ok(Reply::Int(i64::from(removed)))
}
