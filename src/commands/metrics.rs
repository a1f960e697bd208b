//! REC.METRICS [RESET]

use super::{Args, CmdResult, Reply};
use crate::metrics::Snapshot;
use crate::persist::engine;
use redis_module::Context;

pub fn metrics(_ctx: &Context, a: &mut Args) -> CmdResult {
    if a.is_done() {
        let s = Snapshot::collect(&engine(), super::now_ms());
        return Ok(Reply::Bulk(s.prometheus().into_bytes()));
    }
    let kw = a.keyword()?;
    if kw == "RESET" && a.is_done() {
        crate::stats::reset();
        crate::cache::reset_counters();
        crate::quality::quality().reset();
        return Ok(Reply::Ok);
    }
    Err(super::unknown_option(&kw, "RESET or nothing"))
}
