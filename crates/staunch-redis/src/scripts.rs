//! The server-side scripts: one atomic decision per call, on Redis' clock.
//!
//! Each limit is GCRA over microseconds of Redis' `TIME` (so every replica
//! shares one clock): the key holds the limit's theoretical arrival time
//! `tat`; a unit costs `interval = window / limit`; a grant of `n` units
//! fits while `max(tat, now) + n * interval - now <= window`, a token
//! bucket of `limit` units refilled continuously over `window`, the model
//! OpenAI and Anthropic describe for their own limits.

use redis::Script;
use std::sync::LazyLock;

/// `take`: for every key (one per limit), grant between `min` and `want`
/// units, as many as fit; all or nothing across the keys.
///
/// KEYS: one per limit. ARGV: per key, `interval_us window_us min want`.
/// Returns `{1, grant_1, grant_2, 0}` or `{0, 0, 0, wait_us}` (the wait
/// until the largest `min` fits).
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local grants, tats, wait = {}, {}, 0
for i = 1, #KEYS do
  local b = (i - 1) * 4
  local interval = tonumber(ARGV[b + 1])
  local window = tonumber(ARGV[b + 2])
  local min = tonumber(ARGV[b + 3])
  local want = tonumber(ARGV[b + 4])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local room = math.floor((now + window - tat) / interval + 1e-6)
  if min > 0 and room < min then
    local w = tat + min * interval - window - now
    if w > wait then wait = w end
    grants[i] = 0
  else
    local g = want
    if room < g then g = room end
    if g < 0 then g = 0 end
    grants[i] = g
    tats[i] = tat + g * interval
  end
end
if wait > 0 then
  return {0, 0, 0, math.ceil(wait)}
end
for i = 1, #KEYS do
  if grants[i] > 0 then
    redis.call('SET', KEYS[i], string.format('%.17g', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1)
  end
end
return {1, grants[1] or 0, grants[2] or 0, 0}
"#,
    )
});

/// `adjust`: move one limit's `tat` by `units` (positive: charge usage that
/// already happened, never refused; negative: give unused units back, never
/// below now).
///
/// KEYS: the limit. ARGV: `interval_us units`.
pub(crate) static ADJUST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local units = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = tat + units * interval
if tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return 1
"#,
    )
});

/// Publishes a breaker's opening: extends (never shortens) the key's TTL
/// and publishes the message.
///
/// KEYS: the breaker's key. ARGV: `replica remaining_ms channel message`.
pub(crate) static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#,
    )
});
