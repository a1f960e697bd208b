//! Persistence: the user-state data type (RDB, AOF rewrite, MEMORY USAGE, COPY) and the
//! node-wide engine as module aux data. Formats are versioned in `engine::codec` users.

use crate::engine::user::UserState;
use crate::engine::Engine;
use crate::stats;
use redis_module::native_types::RedisType;
use redis_module::{raw, Context};
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// RDB encoding version of the user type (the payload carries its own version byte too).
const USER_ENCVER: i32 = 1;
/// The Redis type name (exactly 9 characters).
pub const USER_TYPE_NAME: &str = "RecUserSt";

pub static USER_TYPE: RedisType = RedisType::new(
    USER_TYPE_NAME,
    USER_ENCVER,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(user_rdb_load),
        rdb_save: Some(user_rdb_save),
        aof_rewrite: Some(user_aof_rewrite),
        mem_usage: Some(user_mem_usage),
        digest: None,
        free: Some(user_free),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::Aux::Before as i32,
        free_effort: None,
        unlink: None,
        copy: Some(user_copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

static ENGINE: LazyLock<Mutex<Engine>> = LazyLock::new(|| Mutex::new(Engine::default()));

/// The node-wide state. Commands run on Redis's main thread, so this is never contended there.
pub fn engine() -> MutexGuard<'static, Engine> {
    ENGINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Boxes a user state for Redis, counting its memory.
pub fn account_new(u: &UserState) {
    stats::add_user_bytes(u.mem_bytes() as i64);
    stats::USER_KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn log(msg: &str) {
    redis_module::logging::log_warning(msg);
}

unsafe extern "C" fn user_rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        if encver != USER_ENCVER {
            return Err(format!("unknown RecUserSt encoding version {encver}"));
        }
        let buf = raw::load_string_buffer(rdb).map_err(|e| e.to_string())?;
        UserState::decode(buf.as_ref()).map_err(|e| e.to_string())
    }));
    match loaded {
        Ok(Ok(u)) => {
            account_new(&u);
            Box::into_raw(Box::new(u)).cast()
        }
        Ok(Err(e)) => {
            log(&format!("RedisRec: cannot load a user state: {e}"));
            std::ptr::null_mut()
        }
        Err(_) => {
            log("RedisRec: cannot load a user state: decoder panicked");
            std::ptr::null_mut()
        }
    }
}

unsafe extern "C" fn user_rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(u) = value.cast::<UserState>().as_ref() else {
        return;
    };
    raw::save_slice(rdb, &u.encode());
}

unsafe extern "C" fn user_aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let Some(u) = value.cast::<UserState>().as_ref() else {
        return;
    };
    let buf = u.encode();
    if let Some(emit) = raw::RedisModule_EmitAOF {
        emit(
            aof,
            c"REC._RESTORE_USER".as_ptr(),
            c"sb".as_ptr(),
            key,
            buf.as_ptr().cast::<std::ffi::c_char>(),
            buf.len(),
        );
    }
}

unsafe extern "C" fn user_mem_usage(value: *const c_void) -> usize {
    value
        .cast::<UserState>()
        .as_ref()
        .map_or(0, UserState::mem_bytes)
}

unsafe extern "C" fn user_free(value: *mut c_void) {
    if value.is_null() {
        return;
    }
    let u = Box::from_raw(value.cast::<UserState>());
    stats::add_user_bytes(-(u.mem_bytes() as i64));
    stats::USER_KEYS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    drop(u);
}

unsafe extern "C" fn user_copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    match value.cast::<UserState>().as_ref() {
        Some(u) => {
            let c = u.clone();
            account_new(&c);
            Box::into_raw(Box::new(c)).cast()
        }
        None => std::ptr::null_mut(),
    }
}

unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if when != raw::Aux::Before as c_int {
        return;
    }
    let buf = engine().save();
    raw::save_slice(rdb, &buf);
}

unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, when: c_int) -> c_int {
    if when != raw::Aux::Before as c_int {
        return raw::REDISMODULE_OK as c_int;
    }
    let loaded = catch_unwind(AssertUnwindSafe(|| {
        if encver != USER_ENCVER {
            return Err(format!("unknown aux encoding version {encver}"));
        }
        let buf = raw::load_string_buffer(rdb).map_err(|e| e.to_string())?;
        Engine::load(buf.as_ref()).map_err(|e| e.to_string())
    }));
    match loaded {
        Ok(Ok(e)) => {
            *engine() = e;
            crate::stats::mark_model_change(crate::commands::now_ms());
            raw::REDISMODULE_OK as c_int
        }
        Ok(Err(e)) => {
            log(&format!("RedisRec: cannot load node-wide state: {e}"));
            raw::REDISMODULE_ERR as c_int
        }
        Err(_) => {
            log("RedisRec: cannot load node-wide state: decoder panicked");
            raw::REDISMODULE_ERR as c_int
        }
    }
}

unsafe extern "C" fn on_flush(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    if subevent == raw::REDISMODULE_SUBEVENT_FLUSHDB_START {
        let _ = catch_unwind(|| {
            *engine() = Engine::default();
            crate::cache::l1_clear();
            crate::cache::STATS
                .l2_keys
                .store(0, std::sync::atomic::Ordering::Relaxed);
        });
    }
}

/// FLUSHALL/FLUSHDB (and the flush before a full sync or DEBUG RELOAD) clear node-wide state.
pub fn subscribe_flush(ctx: &Context) -> bool {
    // Safety: called from OnLoad with a valid context.
    unsafe {
        match raw::RedisModule_SubscribeToServerEvent {
            Some(sub) => {
                sub(
                    ctx.ctx,
                    raw::RedisModuleEvent {
                        id: raw::REDISMODULE_EVENT_FLUSHDB,
                        dataver: 1,
                    },
                    Some(on_flush),
                ) == raw::REDISMODULE_OK as c_int
            }
            None => false,
        }
    }
}

/// The node-wide state if nobody holds it (for crash reports).
pub fn try_engine() -> Option<MutexGuard<'static, Engine>> {
    ENGINE.try_lock().ok()
}
