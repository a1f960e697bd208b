//! RedisRec: a recommendation system inside Redis.
//!
//! Three floors, imports running downward: this file declares the module (commands, data type,
//! configs, INFO); `commands/`, `persist`, `keys`, `config`, `info` and `stats` are the Redis
//! shell; `engine/` is the pure recommendation engine.

pub mod alloc;
pub mod cache;
pub mod commands;
pub mod config;
pub mod engine;
pub mod exporter;
pub mod info;
pub mod keys;
pub mod persist;
pub mod stats;

use commands::{
    catalog, experiment, get, invalidate, metrics as metrics_cmd, model, run, track, user,
};
use persist::USER_TYPE;
use redis_module::configuration::{
    register_i64_configuration, register_string_configuration, ConfigurationFlags,
};
use redis_module::{raw, redis_module, Context, RedisResult, RedisString, RedisValue, Status};
use stats::Cmd;

macro_rules! handler {
    ($fn_name:ident, $cmd:expr, $imp:path) => {
        fn $fn_name(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
            run(ctx, args, $cmd, $imp)
        }
    };
}

handler!(cmd_item_set, Cmd::ItemSet, catalog::item_set);
handler!(cmd_item_get, Cmd::ItemGet, catalog::item_get);
handler!(cmd_item_del, Cmd::ItemDel, catalog::item_del);
handler!(cmd_track, Cmd::Track, track::track);
handler!(cmd_get, Cmd::Get, get::get);
handler!(cmd_get_ro, Cmd::GetRo, get::get_ro);
handler!(cmd_similar, Cmd::Similar, get::similar);
handler!(cmd_popular, Cmd::Popular, get::popular);
handler!(cmd_user_get, Cmd::UserGet, user::user_get);
handler!(cmd_user_set, Cmd::UserSet, user::user_set);
handler!(cmd_user_del, Cmd::UserDel, user::user_del);
handler!(cmd_model_set, Cmd::ModelSet, model::model_set);
handler!(cmd_model_get, Cmd::ModelGet, model::model_get);
handler!(cmd_model_list, Cmd::ModelList, model::model_list);
handler!(cmd_model_del, Cmd::ModelDel, model::model_del);
handler!(cmd_restore_user, Cmd::RestoreUser, user::restore_user);
handler!(cmd_metrics, Cmd::Metrics, metrics_cmd::metrics);
handler!(cmd_exp_create, Cmd::ExperimentCreate, experiment::create);
handler!(cmd_exp_get, Cmd::ExperimentGet, experiment::get);
handler!(cmd_exp_list, Cmd::ExperimentList, experiment::list);
handler!(cmd_exp_stop, Cmd::ExperimentStop, experiment::stop);
handler!(cmd_exp_del, Cmd::ExperimentDel, experiment::del);
handler!(cmd_exp_stats, Cmd::ExperimentStats, experiment::stats_cmd);
handler!(cmd_assign, Cmd::Assign, experiment::assign);
handler!(cmd_samplesize, Cmd::SampleSize, experiment::samplesize);
handler!(cmd_expose, Cmd::Expose, experiment::expose);

/// REC.INVALIDATE declares its key through the getkeys API: only the `<user>` form has one.
fn cmd_invalidate(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if ctx.is_keys_position_request() {
        if invalidate::names_user(&args) {
            ctx.key_at_pos(1);
        }
        return Ok(RedisValue::NoReply);
    }
    run(ctx, args, Cmd::Invalidate, invalidate::invalidate)
}

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    // A short read of a truncated RDB must fail the load cleanly, not abort the server.
    // Safety: called from OnLoad with a valid context.
    unsafe {
        if let Some(set) = raw::RedisModule_SetModuleOptions {
            set(ctx.ctx, raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS as i32);
        }
    }
    for (name, var, default, min, max) in config::INT_PARAMS {
        register_i64_configuration(
            ctx,
            name,
            var,
            default,
            min,
            max,
            ConfigurationFlags::DEFAULT,
            None,
        );
    }
    register_string_configuration(
        ctx,
        "action-weights",
        &*config::ACTION_WEIGHTS,
        engine::actions::DEFAULT_ACTION_WEIGHTS,
        ConfigurationFlags::DEFAULT,
        None,
    );
    for (name, var, default) in [
        (
            "cache-jitter",
            &*config::CACHE_JITTER,
            config::DEFAULT_CACHE_JITTER,
        ),
        (
            "cache-beta",
            &*config::CACHE_BETA,
            config::DEFAULT_CACHE_BETA,
        ),
    ] {
        register_string_configuration(ctx, name, var, default, ConfigurationFlags::DEFAULT, None);
    }
    register_string_configuration(
        ctx,
        "metrics-bind",
        &*config::METRICS_BIND,
        config::DEFAULT_METRICS_BIND,
        ConfigurationFlags::DEFAULT,
        None,
    );
    redis_module::configuration::register_bool_configuration(
        ctx,
        "metrics-enabled",
        &stats::METRICS_ENABLED,
        true,
        ConfigurationFlags::DEFAULT,
        None,
    );
    register_string_configuration(
        ctx,
        "invalidating-actions",
        &*config::INVALIDATING_ACTIONS,
        config::DEFAULT_INVALIDATING_ACTIONS,
        ConfigurationFlags::DEFAULT,
        None,
    );
    register_string_configuration(
        ctx,
        "key-prefix",
        &*config::KEY_PREFIX,
        config::DEFAULT_KEY_PREFIX,
        ConfigurationFlags::DEFAULT,
        None,
    );
    // Safety: called from OnLoad with a valid context.
    unsafe {
        if let Some(load) = raw::RedisModule_LoadConfigs {
            if load(ctx.ctx) != raw::REDISMODULE_OK as i32 {
                ctx.log_warning("RedisRec: a rec.* parameter in the configuration is invalid");
                return Status::Err;
            }
        }
    }
    raw::register_info_function(ctx.ctx, Some(info::info));
    stats::mark_model_change(commands::now_ms());
    exporter::start(ctx);
    if !persist::subscribe_flush(ctx) {
        ctx.log_warning("RedisRec: cannot subscribe to flush events");
        return Status::Err;
    }
    Status::Ok
}

redis_module! {
    name: "rec",
    version: 1,
    allocator: (alloc::RecAlloc, alloc::RecAlloc),
    data_types: [USER_TYPE],
    init: init,
    commands: [
        ["rec.item.set", cmd_item_set, "write deny-oom", 0, 0, 0, ""],
        ["rec.item.get", cmd_item_get, "readonly", 0, 0, 0, ""],
        ["rec.item.del", cmd_item_del, "write", 0, 0, 0, ""],
        ["rec.track", cmd_track, "write deny-oom", 1, 1, 1, ""],
        ["rec.get", cmd_get, "write", 1, 1, 1, ""],
        ["rec.get_ro", cmd_get_ro, "readonly", 1, 1, 1, ""],
        ["rec.similar", cmd_similar, "readonly", 0, 0, 0, ""],
        ["rec.popular", cmd_popular, "readonly", 0, 0, 0, ""],
        ["rec.user.get", cmd_user_get, "readonly", 1, 1, 1, ""],
        ["rec.user.set", cmd_user_set, "write deny-oom", 1, 1, 1, ""],
        ["rec.user.del", cmd_user_del, "write", 1, 1, 1, ""],
        ["rec.model.set", cmd_model_set, "write deny-oom", 0, 0, 0, ""],
        ["rec.model.get", cmd_model_get, "readonly", 0, 0, 0, ""],
        ["rec.model.list", cmd_model_list, "readonly", 0, 0, 0, ""],
        ["rec.model.del", cmd_model_del, "write", 0, 0, 0, ""],
        ["rec._restore_user", cmd_restore_user, "write deny-oom", 1, 1, 1, ""],
        ["rec.invalidate", cmd_invalidate, "write getkeys-api", 1, 1, 1, ""],
        ["rec.metrics", cmd_metrics, "readonly", 0, 0, 0, ""],
        ["rec.experiment.create", cmd_exp_create, "write deny-oom", 0, 0, 0, ""],
        ["rec.experiment.get", cmd_exp_get, "readonly", 0, 0, 0, ""],
        ["rec.experiment.list", cmd_exp_list, "readonly", 0, 0, 0, ""],
        ["rec.experiment.stop", cmd_exp_stop, "write", 0, 0, 0, ""],
        ["rec.experiment.del", cmd_exp_del, "write", 0, 0, 0, ""],
        ["rec.experiment.stats", cmd_exp_stats, "readonly", 0, 0, 0, ""],
        ["rec.assign", cmd_assign, "readonly", 2, 2, 1, ""],
        ["rec.samplesize", cmd_samplesize, "readonly", 0, 0, 0, ""],
        ["rec._expose", cmd_expose, "write deny-oom", 1, 1, 1, ""],
    ],
    event_handlers: [
        [@GENERIC @EXPIRED @EVICTED @LOADED: cache::on_key_event],
    ],
}
pub mod histogram;
pub mod metrics;
pub mod quality;
