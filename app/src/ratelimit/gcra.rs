//! The GCRA script and its answer.

use std::sync::LazyLock;

use super::Charge;
use crate::redis::{Redis, RedisError};

/// KEYS: one per limit; ARGV: for each, its number of requests and its period in ms.
/// Either every limit admits the request and each is charged, or none is.
/// Returns per key: {allowed 0/1, remaining, ms until the whole budget is back, ms until a
/// request is admitted again}.
static SCRIPT: LazyLock<::redis::Script> = LazyLock::new(|| {
    ::redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local results, next_tats, all = {}, {}, true
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i - 1])
  local period = tonumber(ARGV[2 * i])
  local interval = period / limit
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  local admit_at = next_tat - period
  if now < admit_at then
    all = false
    results[i] = {0, 0, math.ceil(tat - now), math.ceil(admit_at - now)}
  else
    next_tats[i] = next_tat
    results[i] = {1, math.floor((period - (next_tat - now)) / interval), math.ceil(next_tat - now), 0}
  end
end
if all then
  for i, key in ipairs(KEYS) do
    redis.call('SET', key, string.format('%.3f', next_tats[i]), 'PX', math.ceil(next_tats[i] - now))
  end
end
return results
",
    )
});

/// The answer for one request: admitted or not, and the figures of the tightest limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The limit that decided (the refusing one, or the one with least left).
    pub class: &'static str,
    pub limit: u32,
    pub remaining: u32,
    pub reset_s: u64,
    pub retry_after_s: u64,
}

pub(super) async fn run(redis: &Redis, charges: &[&Charge<'_>]) -> Result<Decision, RedisError> {
    let mut invocation = SCRIPT.prepare_invoke();
    for charge in charges {
        invocation
            .key(redis.key(format_args!("rl:{}:{}", charge.class, charge.subject)))
            .arg(charge.limit.requests)
            .arg(charge.limit.per_s.saturating_mul(1000));
    }
    let answers: Vec<(i64, i64, i64, i64)> = redis
        .run("rate_limit", |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await?;
    let seconds = |ms: i64| (ms.max(0) as u64).div_ceil(1000);
    let decisions = charges.iter().zip(answers).map(|(charge, answer)| {
        let (allowed, remaining, reset_ms, retry_ms) = answer;
        Decision {
            allowed: allowed == 1,
            class: charge.class,
            limit: charge.limit.requests,
            remaining: remaining.clamp(0, u32::MAX as i64) as u32,
            reset_s: seconds(reset_ms),
            // A refused client is told to wait at least a second.
            retry_after_s: if allowed == 1 {
                0
            } else {
                seconds(retry_ms).max(1)
            },
        }
    });
    // The refusal that lasts longest, else the limit with least left.
    decisions
        .min_by_key(|d| (d.allowed, std::cmp::Reverse(d.retry_after_s), d.remaining))
        .ok_or(RedisError::Off)
}
