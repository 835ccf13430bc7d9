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
/// units, all or nothing across the keys, now or at the earliest instant
/// when every `min` fits if that is at most `patience` away.
///
/// KEYS: one per limit, then the quota's epoch key. ARGV: per limit,
/// `interval_us window_us min want`, then `patience_us`. Returns
/// `{1, grant_1, grant_2, wait_us, epoch, backlog_1, backlog_2}`:
/// admitted, to go after `wait_us` (0: now; a request that waits is
/// granted its `min` only, its slot reserved, so later requests from every
/// replica queue behind it), or `{0, 0, 0, wait_us, epoch, backlog_1,
/// backlog_2}`: refused, room in `wait_us`. `backlog_i` is how far the
/// limit's `tat` is ahead of now afterwards (the bucket is empty at
/// `window_us`, slots are reserved beyond it), which a replica uses to
/// start its local fallback from; `epoch` is the epoch key's value (see
/// [`EPOCH`]), created if missing.
pub(crate) static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS - 1
local epoch = redis.call('GET', KEYS[n + 1])
if not epoch then
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[n + 1], epoch)
end
local patience = tonumber(ARGV[n * 4 + 1]) or 0
local tats, rooms, at = {}, {}, now
for i = 1, n do
  local b = (i - 1) * 4
  local interval = tonumber(ARGV[b + 1])
  local window = tonumber(ARGV[b + 2])
  local min = tonumber(ARGV[b + 3])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local room = math.floor((now + window - tat) / interval + 1e-6)
  if min > 0 and room < min then
    local earliest = tat + min * interval - window
    if earliest > at then at = earliest end
  end
  tats[i] = tat
  rooms[i] = room
end
local wait = math.ceil(at - now)
if wait > patience then
  return {0, 0, 0, wait, epoch, math.floor(tats[1] - now), math.floor((tats[2] or now) - now)}
end
local grants = {}
for i = 1, n do
  local b = (i - 1) * 4
  local interval = tonumber(ARGV[b + 1])
  local min = tonumber(ARGV[b + 3])
  local want = tonumber(ARGV[b + 4])
  local g = min
  if wait <= 0 then
    g = want
    if rooms[i] < g then g = rooms[i] end
  end
  if g < 0 then g = 0 end
  grants[i] = g
  if g > 0 then
    local from = tats[i]
    if at > from then from = at end
    local tat = from + g * interval
    redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    tats[i] = tat
  end
end
return {1, grants[1] or 0, grants[2] or 0, wait, epoch, math.floor(tats[1] - now), math.floor((tats[2] or now) - now)}
"#,
    )
});

/// `epoch`: the value of a quota's epoch key, created (Redis' time in
/// microseconds, no expiry) if missing. A value other than the one a
/// replica saw last means Redis lost the quota's state (a restart without
/// persistence, a failover to an empty replica, a flush): the limits' keys
/// are gone too, and the bucket looks full when it is not.
///
/// KEYS: the epoch key. Returns the epoch.
pub(crate) static EPOCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  local t = redis.call('TIME')
  epoch = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[1], epoch)
end
return epoch
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
/// to the break's end and publishes `id\nremaining_ms\nname`, the time
/// left computed on Redis' clock when the script runs. A script that runs
/// late (sent while Redis was paused, run when it resumed) publishes only
/// what is left of the break, and nothing once it is over: a stale
/// opening must not open the others' circuits anew.
///
/// KEYS: the breaker's key. ARGV: `id end_unix_ms channel name`, the
/// opening's id (`replica/seq`) being the key's value and `end_unix_ms`
/// when the break ends, on the publisher's wall clock (replicas' clocks
/// are assumed synchronised to well under a break).
pub(crate) static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = tonumber(ARGV[2]) - now
if left <= 0 then
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < left then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', left)
end
redis.call('PUBLISH', ARGV[3], ARGV[1] .. '\n' .. left .. '\n' .. ARGV[4])
return 1
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::OPEN;
    use staunch_test::redis::RedisServer;

    fn unix_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// An opening is published with the time its break has left when
    /// Redis runs it, and not at all once the break is over (a script
    /// queued while Redis was paused must not open anyone's circuit when
    /// it resumes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_opening_carries_what_is_left_of_its_break_and_a_stale_one_nothing() {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).expect("a url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connected");
        let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
        pubsub.subscribe("ch").await.expect("subscribed");

        let over: i64 = OPEN
            .key("b:x")
            .arg("r1/1")
            .arg(unix_ms() - 10)
            .arg("ch")
            .arg("x")
            .invoke_async(&mut conn)
            .await
            .expect("ran");
        assert_eq!(over, 0);
        let exists: i64 = redis::cmd("EXISTS")
            .arg("b:x")
            .query_async(&mut conn)
            .await
            .expect("ran");
        assert_eq!(exists, 0, "a break that is over sets nothing");

        let live: i64 = OPEN
            .key("b:x")
            .arg("r1/2")
            .arg(unix_ms() + 5_000)
            .arg("ch")
            .arg("x")
            .invoke_async(&mut conn)
            .await
            .expect("ran");
        assert_eq!(live, 1);
        let ttl: i64 = redis::cmd("PTTL")
            .arg("b:x")
            .query_async(&mut conn)
            .await
            .expect("ran");
        assert!((4_000..=5_000).contains(&ttl), "{ttl}");
        // The only message is the live one's: id, time left, name.
        let mut messages = pubsub.into_on_message();
        let message = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut messages), cx)
        })
        .await
        .expect("a message");
        let payload: String = message.get_payload().expect("text");
        let parts: Vec<&str> = payload.split('\n').collect();
        assert_eq!((parts[0], parts[2]), ("r1/2", "x"));
        let left: u64 = parts[1].parse().expect("a number");
        assert!((4_000..=5_000).contains(&left), "{left}");
    }
}
