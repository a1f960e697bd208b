-- RedisRec counters for redis_exporter's --script option.
--
--   prometheus-redis-exporter --redis.addr redis://127.0.0.1:6379 \
--       --script /path/to/contrib/redis_exporter/rec.lua
--
-- redis_exporter runs this with EVAL on every scrape and expects a flat array of alternating
-- name / value strings; each pair becomes
--   redis_script_values{key="<name>"} <value>
-- (plus redis_script_result 1 when the script ran). The names are the INFO rec field names,
-- exactly as the module emits them (rec_get_calls, rec_l1_hits, rec_ctr, ...; see
-- docs/monitoring.md). Values stay strings, so fractions are not truncated by Lua-to-RESP
-- integer conversion. Lines whose value is not a number are skipped: redis_exporter drops all
-- script values when one of them does not parse.

local ok, info = pcall(redis.call, 'INFO', 'rec')
if not ok or type(info) ~= 'string' then
    return {}
end

local out = {}
for line in string.gmatch(info, '[^\r\n]+') do
    if string.sub(line, 1, 1) ~= '#' then
        local name, value = string.match(line, '^([%w_]+):(.+)$')
        if name and value and tonumber(value) ~= nil then
            out[#out + 1] = name
            out[#out + 1] = value
        end
    end
end
return out
