//! REC.USER.GET | SET | DEL, the user-key helpers every user command shares, and the internal
//! REC._RESTORE_USER that AOF rewrites emit.

use super::{err, map, Args, CmdError, CmdResult, Reply};
use crate::config;
use crate::engine::user::UserState;
use crate::keys::user_key;
use crate::persist::{account_new, USER_TYPE};
use crate::stats;
use redis_module::key::{RedisKey, RedisKeyWritable};
use redis_module::{Context, RedisError};

/// The user's state key name.
pub fn user_key_name(ctx: &Context, user: &[u8]) -> redis_module::RedisString {
    let prefix = config::KEY_PREFIX.value();
    super::binary_string(ctx, &user_key(&prefix, user, b'u'))
}

fn wrong_type(e: RedisError) -> CmdError {
    match e {
        RedisError::WrongType => CmdError(
            "the user's state key holds a value of another type — expected a RecUserSt key \
             (is rec.key-prefix shared with other data?)"
                .into(),
        ),
        other => other.into(),
    }
}

/// A user's key opened for writing: either holding a state or empty.
pub enum UserSlot<'a> {
    Existing(RedisKeyWritable, &'a mut UserState),
    Empty(RedisKeyWritable),
}

pub fn open_user_writable<'a>(ctx: &Context, user: &[u8]) -> Result<UserSlot<'a>, CmdError> {
    let key = ctx.open_key_writable(&user_key_name(ctx, user));
    match key.get_value::<UserState>(&USER_TYPE).map_err(wrong_type)? {
        Some(state) => Ok(UserSlot::Existing(key, state)),
        None => Ok(UserSlot::Empty(key)),
    }
}

/// Reads a user's state (read-only open); `None` if the user has none.
pub fn with_user<T>(
    ctx: &Context,
    user: &[u8],
    f: impl FnOnce(Option<&UserState>) -> T,
) -> Result<T, CmdError> {
    let key: RedisKey = ctx.open_key(&user_key_name(ctx, user));
    let state = key.get_value::<UserState>(&USER_TYPE).map_err(wrong_type)?;
    Ok(f(state))
}

fn only(a: &mut Args, n: usize) -> Result<(), CmdError> {
    if a.remaining() != n {
        return Err(super::arity_error(&a.name()));
    }
    Ok(())
}

pub fn user_get(ctx: &Context, a: &mut Args) -> CmdResult {
    only(a, 1)?;
    let user = a.id("user")?;
    with_user(ctx, user, |state| {
        let Some(u) = state else {
            return Reply::Null;
        };
        let actions = u
            .actions
            .iter()
            .map(|(n, c)| (n.to_vec(), Reply::Int(*c as i64)))
            .collect();
        let categories = u
            .top_categories()
            .into_iter()
            .take(10)
            .map(|(n, aff)| (n.to_vec(), Reply::Double(aff)))
            .collect();
        let recent = u
            .recent_items(20)
            .into_iter()
            .map(|i| Reply::Bulk(i.to_vec()))
            .collect();
        let features = u
            .features
            .iter()
            .map(|(k, v)| (k.to_vec(), Reply::Bulk(v.to_vec())))
            .collect();
        map(vec![
            ("user", Reply::Bulk(user.to_vec())),
            ("events", Reply::Int(u.events as i64)),
            ("actions", Reply::Map(actions)),
            ("categories", Reply::Map(categories)),
            ("recent", Reply::Array(recent)),
            ("purchased", Reply::Int(u.purchased.len() as i64)),
            ("disliked", Reply::Int(u.disliked.len() as i64)),
            ("last_seen", Reply::Int(u.last_seen)),
            ("features", Reply::Map(features)),
        ])
    })
}

/// Largest custom feature value, in bytes.
const MAX_FEATURE_VALUE: usize = 1024;

pub fn user_set(ctx: &Context, a: &mut Args) -> CmdResult {
    a.need(3)?;
    let user = a.id("user")?;
    if !a.remaining().is_multiple_of(2) {
        return Err(super::arity_error(&a.name()));
    }
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    while !a.is_done() {
        let k = a.arg()?;
        super::check_id("feature", k)?;
        let v = a.arg()?;
        if v.len() > MAX_FEATURE_VALUE {
            return err(format!(
                "feature value too large ({} bytes) — expected at most {MAX_FEATURE_VALUE} bytes",
                v.len()
            ));
        }
        pairs.push((k, v));
    }
    let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| *k).collect();
    let max = config::get(&config::MAX_USER_FEATURES);
    let mut slot = open_user_writable(ctx, user)?;
    let current = match &slot {
        UserSlot::Existing(_, s) => s.features.len() + s.new_feature_count(&keys),
        UserSlot::Empty(_) => UserState::default().new_feature_count(&keys),
    };
    if current > max {
        return err(format!(
            "too many features ({current}) — expected at most {max} per user (rec.max-user-features)"
        ));
    }
    let added = match &mut slot {
        UserSlot::Existing(_, state) => {
            let before = state.mem_bytes();
            let n = state.set_features(&pairs);
            stats::add_user_bytes(state.mem_bytes() as i64 - before as i64);
            n
        }
        UserSlot::Empty(key) => {
            let mut state = UserState::default();
            let n = state.set_features(&pairs);
            account_new(&state);
            key.set_value(&USER_TYPE, state)?;
            n
        }
    };
    ctx.replicate_verbatim();
    Ok(Reply::Int(added as i64))
}

pub fn user_del(ctx: &Context, a: &mut Args) -> CmdResult {
    only(a, 1)?;
    let user = a.id("user")?;
    let slot = open_user_writable(ctx, user)?;
    let removed = match slot {
        UserSlot::Existing(key, _) => {
            key.delete()?;
            true
        }
        UserSlot::Empty(_) => false,
    };
    // A forgotten user's cached lists go too.
    let ckey = crate::cache::cache_key(user);
    let dropped = crate::cache::drop_user(ctx, &ckey) > 0;
    let removed = removed || dropped;
    if removed {
        ctx.replicate_verbatim();
    }
    Ok(Reply::Int(i64::from(removed)))
}

/// REC._RESTORE_USER <key> <payload>: recreates a user key from an AOF rewrite.
pub fn restore_user(ctx: &Context, a: &mut Args) -> CmdResult {
    super::internal_only(ctx, "REC._RESTORE_USER")?;
    only(a, 2)?;
    let key_name = a.arg()?;
    let payload = a.arg()?;
    let state = UserState::decode(payload).map_err(|e| CmdError(e.to_string()))?;
    let key = ctx.open_key_writable(&super::binary_string(ctx, key_name));
    if !key.is_empty() && key.get_value::<UserState>(&USER_TYPE).is_err() {
        return err("target key holds a value of another type — expected a RecUserSt key");
    }
    account_new(&state);
    key.set_value(&USER_TYPE, state)?;
    ctx.replicate_verbatim();
    Ok(Reply::Ok)
}
