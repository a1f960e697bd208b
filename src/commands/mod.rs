//! The Redis shell: argument parsing, replies and the panic guard shared by every command.

pub mod catalog;
pub mod experiment;
pub mod get;
pub mod invalidate;
pub mod metrics;
pub mod model;
pub mod track;
pub mod user;

use crate::config;
use crate::stats;
use redis_module::{raw, Context, RedisError, RedisResult, RedisString, RedisValue};
use std::ffi::c_long;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// An error reply: `ERR <what was wrong> — expected <what is accepted>`.
#[derive(Debug)]
pub struct CmdError(pub String);

pub type CmdResult = Result<Reply, CmdError>;

pub fn err<T>(msg: impl Into<String>) -> Result<T, CmdError> {
    Err(CmdError(msg.into()))
}

/// A reply, written with the raw API (maps become flat arrays for RESP2 clients).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Int(i64),
    Bulk(Vec<u8>),
    Ok,
    Double(f64),
    Null,
    Array(Vec<Reply>),
    Map(Vec<(Vec<u8>, Reply)>),
}

impl Reply {
    pub fn str(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    fn write(&self, ctx: *mut raw::RedisModuleCtx) {
        match self {
            Reply::Int(i) => {
                raw::reply_with_long_long(ctx, *i);
            }
            Reply::Bulk(b) => {
                raw::reply_with_string_buffer(ctx, b.as_ptr().cast(), b.len());
            }
            Reply::Ok => {
                raw::reply_with_simple_string(ctx, c"OK".as_ptr());
            }
            Reply::Double(d) => {
                raw::reply_with_double(ctx, *d);
            }
            Reply::Null => {
                raw::reply_with_null(ctx);
            }
            Reply::Array(a) => {
                raw::reply_with_array(ctx, a.len() as c_long);
                for x in a {
                    x.write(ctx);
                }
            }
            Reply::Map(m) => {
                raw::reply_with_map(ctx, m.len() as c_long);
                for (k, v) in m {
                    raw::reply_with_string_buffer(ctx, k.as_ptr().cast(), k.len());
                    v.write(ctx);
                }
            }
        }
    }
}

/// Builds a map reply with static field names.
pub fn map(fields: Vec<(&str, Reply)>) -> Reply {
    Reply::Map(
        fields
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// Runs a handler behind a panic guard, counts it, and writes its reply.
pub fn run(
    ctx: &Context,
    args: Vec<RedisString>,
    cmd: stats::Cmd,
    handler: fn(&Context, &mut Args) -> CmdResult,
) -> RedisResult {
    let metrics = stats::enabled();
    let started = metrics.then(std::time::Instant::now);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut a = Args::new(&args);
        handler(ctx, &mut a)
    }));
    let ok = match outcome {
        Ok(Ok(reply)) => {
            reply.write(ctx.ctx);
            true
        }
        Ok(Err(CmdError(msg))) => {
            reply_error(ctx, &format!("ERR {msg}"));
            false
        }
        Err(_) => {
            ctx.log_warning("RedisRec: a command panicked; the call was aborted");
            reply_error(ctx, "ERR internal error in RedisRec (logged)");
            false
        }
    };
    if let Some(t) = started {
        stats::record_call(cmd, ok, t.elapsed());
    }
    Ok(RedisValue::NoReply)
}

/// Writes an error reply byte for byte (UTF-8 kept; CR, LF and NUL become spaces).
pub fn reply_error(ctx: &Context, msg: &str) {
    let bytes: Vec<u8> = msg
        .bytes()
        .map(|b| {
            if matches!(b, b'\r' | b'\n' | 0) {
                b' '
            } else {
                b
            }
        })
        .collect();
    // Safety: a valid context and a NUL-terminated string that outlives the call.
    unsafe {
        if let (Ok(c), Some(f)) = (
            std::ffi::CString::new(bytes),
            raw::RedisModule_ReplyWithError,
        ) {
            f(ctx.ctx, c.as_ptr());
        }
    }
}

/// Wrong arity, the way Redis words it.
pub fn arity_error(name: &str) -> CmdError {
    CmdError(format!("wrong number of arguments for '{name}' command"))
}

/// One cursor over a command's arguments; keywords case-insensitive, numbers validated once.
pub struct Args<'a> {
    args: &'a [RedisString],
    pos: usize,
}

impl<'a> Args<'a> {
    pub fn new(args: &'a [RedisString]) -> Self {
        // args[0] is the command name.
        Args { args, pos: 1 }
    }

    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|a| String::from_utf8_lossy(a.as_slice()).to_lowercase())
            .unwrap_or_default()
    }

    /// Every argument after the command name, for re-replication with additions.
    pub fn all_after_name(&self) -> Vec<Vec<u8>> {
        self.args
            .iter()
            .skip(1)
            .map(|a| a.as_slice().to_vec())
            .collect()
    }

    pub fn remaining(&self) -> usize {
        self.args.len().saturating_sub(self.pos)
    }

    pub fn is_done(&self) -> bool {
        self.remaining() == 0
    }

    /// Requires at least `n` more arguments, else the arity error.
    pub fn need(&self, n: usize) -> Result<(), CmdError> {
        if self.remaining() < n {
            Err(arity_error(&self.name()))
        } else {
            Ok(())
        }
    }

    pub fn peek(&self) -> Option<&'a [u8]> {
        self.args.get(self.pos).map(|a| a.as_slice())
    }

    /// The next argument, or the arity error.
    pub fn arg(&mut self) -> Result<&'a [u8], CmdError> {
        match self.args.get(self.pos) {
            Some(a) => {
                self.pos += 1;
                Ok(a.as_slice())
            }
            None => Err(arity_error(&self.name())),
        }
    }

    /// The value that follows an option keyword.
    pub fn value_of(&mut self, option: &str) -> Result<&'a [u8], CmdError> {
        match self.args.get(self.pos) {
            Some(a) => {
                self.pos += 1;
                Ok(a.as_slice())
            }
            None => err(format!(
                "{option} needs a value — expected {option} <value>"
            )),
        }
    }

    /// The next argument as an upper-case keyword.
    pub fn keyword(&mut self) -> Result<String, CmdError> {
        Ok(String::from_utf8_lossy(self.arg()?).to_ascii_uppercase())
    }

    pub fn id(&mut self, what: &str) -> Result<&'a [u8], CmdError> {
        let v = self.arg()?;
        check_id(what, v)?;
        Ok(v)
    }

    pub fn int(&mut self, option: &str, min: i64, max: i64) -> Result<i64, CmdError> {
        let v = self.value_of(option)?;
        parse_int(option, v, min, max)
    }

    pub fn float(&mut self, option: &str, min: f64, max: f64) -> Result<f64, CmdError> {
        let v = self.value_of(option)?;
        parse_float(option, v, min, max)
    }

    pub fn count(&mut self) -> Result<usize, CmdError> {
        let max = config::get(&config::MAX_COUNT) as i64;
        Ok(self.int("COUNT", 1, max)? as usize)
    }
}

pub fn check_id(what: &str, v: &[u8]) -> Result<(), CmdError> {
    let max = config::get(&config::MAX_ID_LENGTH);
    if v.is_empty() || v.len() > max {
        return err(format!(
            "bad {what} id ({} bytes) — expected 1 to {max} bytes (rec.max-id-length)",
            v.len()
        ));
    }
    Ok(())
}

pub fn parse_int(option: &str, v: &[u8], min: i64, max: i64) -> Result<i64, CmdError> {
    let n: Option<i64> = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => err(format!(
            "bad {option} '{}' — expected an integer from {min} to {max}",
            show(v)
        )),
    }
}

pub fn parse_float(option: &str, v: &[u8], min: f64, max: f64) -> Result<f64, CmdError> {
    let n: Option<f64> = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
    match n {
        Some(n) if n.is_finite() && n >= min && n <= max => Ok(n),
        _ => err(format!(
            "bad {option} '{}' — expected a number from {min} to {max}",
            show(v)
        )),
    }
}

/// A client-supplied value quoted in an error, shortened and made printable.
pub fn show(v: &[u8]) -> String {
    let mut s: String = String::from_utf8_lossy(&v[..v.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if v.len() > 40 {
        s.push_str("...");
    }
    s
}

/// An error for an option given twice.
pub fn once<T>(slot: &Option<T>, option: &str) -> Result<(), CmdError> {
    if slot.is_some() {
        return err(format!(
            "{option} given twice — expected each option at most once"
        ));
    }
    Ok(())
}

pub fn unknown_option(v: &str, expected: &str) -> CmdError {
    CmdError(format!(
        "unknown option '{}' — expected {expected}",
        show(v.as_bytes())
    ))
}

/// A binary-safe RedisString (the crate's `create_string` goes through a C string and cannot
/// hold NUL bytes, which ids may contain).
pub fn binary_string(ctx: &Context, bytes: &[u8]) -> RedisString {
    RedisString::create_from_slice(ctx.ctx, bytes)
}

/// Whether the command comes from the primary's replication stream or an AOF being loaded.
pub fn from_primary(ctx: &Context) -> bool {
    ctx.get_flags()
        .intersects(redis_module::ContextFlags::REPLICATED | redis_module::ContextFlags::LOADING)
}

/// Internal commands (AOF rewrite and replication effects) are refused from clients.
pub fn internal_only(ctx: &Context, name: &str) -> Result<(), CmdError> {
    if from_primary(ctx) {
        Ok(())
    } else {
        err(format!(
            "{name} is internal — expected only in an AOF or a replication stream"
        ))
    }
}

/// Current Unix time in milliseconds, as Redis sees it.
pub fn now_ms() -> i64 {
    // Safety: RedisModule_Milliseconds takes no arguments and is always set after OnLoad.
    unsafe { raw::RedisModule_Milliseconds.map_or(0, |f| f()) }
}

/// Scores in RESP: a double (bulk string for RESP2 clients).
pub fn score_map(list: Vec<(Vec<u8>, f64)>, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Map(
            list.into_iter()
                .map(|(id, s)| (id, Reply::Double(s)))
                .collect(),
        )
    } else {
        Reply::Array(list.into_iter().map(|(id, _)| Reply::Bulk(id)).collect())
    }
}

impl From<RedisError> for CmdError {
    fn from(e: RedisError) -> Self {
        CmdError(e.to_string())
    }
}
