//! The named chaos scenarios the demo can run.

use staunch_mock::{Fault, Outage, RandomFault, Scenario, StreamErrorKind};

/// Names accepted by `--scenario`. Outage windows are placed for the
/// default pace (300 requests at 100/s: a three-second run). `stream`
/// sends every request with `stream: true` (see `streaming.rs`); `quota`
/// sends it through four replicas sharing one provider quota (see
/// `quota.rs`; 50/s by default); `tail` runs two deployments of one
/// model, each its own mock server, and this is the slow one's (see
/// `tail.rs`).
pub const NAMES: [&str; 6] = ["storm", "outage", "calm", "stream", "quota", "tail"];

fn p(probability: f64, fault: Fault) -> RandomFault {
    RandomFault { probability, fault }
}

/// The scenario called `name`, seeded with `seed`.
pub fn named(name: &str, seed: u64) -> Option<Scenario> {
    let mut s = Scenario {
        seed,
        latency_ms: 15,
        ..Scenario::default()
    };
    // gpt-4o is configured with a small window here so that the long
    // prompts of the mix overflow it and must go to Claude.
    s.context_windows.insert("gpt-4o".into(), 8_000);
    s.context_windows.insert("gpt-4o-mini".into(), 8_000);
    match name {
        "storm" => {
            // Rate-limit bursts with Retry-After, 5xx and 529 bursts, hangs,
            // malformed and truncated bodies, resets, content-filter hits,
            // and the OpenAI route down for three seconds.
            s.openai.random = vec![
                p(0.10, Fault::RateLimit { retry_after: 0.3 }),
                p(0.06, Fault::Overloaded { retry_after: None }),
                p(0.05, Fault::ServerError),
                p(0.02, Fault::Hang),
                p(0.02, Fault::Malformed),
                p(0.02, Fault::CutJson),
                p(0.02, Fault::Truncated),
                p(0.02, Fault::Reset),
                p(0.02, Fault::ContentFilter),
            ];
            s.anthropic.random = vec![
                p(
                    0.08,
                    Fault::Overloaded {
                        retry_after: Some(0.2),
                    },
                ),
                p(0.04, Fault::RateLimit { retry_after: 0.2 }),
                p(0.03, Fault::ServerError),
                p(0.01, Fault::Hang),
            ];
            s.outage = Some(Outage {
                start_ms: 1_000,
                end_ms: 2_000,
                routes: vec!["openai".into()],
            });
        }
        "outage" => {
            // Both providers down together for a while: only the cache and
            // the static answer are left.
            s.openai.random = vec![p(0.05, Fault::ServerError)];
            s.anthropic.random = vec![p(0.05, Fault::Overloaded { retry_after: None })];
            s.outage = Some(Outage {
                start_ms: 1_200,
                end_ms: 2_400,
                routes: vec![],
            });
        }
        "calm" => {}
        "tail" => return Some(crate::tail::slow(seed)),
        // No faults: the only refusals are the provider quota's 429s, which
        // `quota.rs` enforces in front of the OpenAI route.
        "quota" => {}
        "stream" => {
            // Streams that break the ways real ones do: before the first
            // token (an error in the first frame, a slow first token, the
            // usual error statuses and resets) and after it (a cut
            // connection, a stall, an in-band error event), plus the
            // harmless ones (one malformed event, a missing terminator).
            s.openai.random = vec![
                p(0.05, Fault::ErrorFirstFrame),
                p(0.05, Fault::SlowFirstToken { ms: 1_500 }),
                p(0.05, Fault::CutAfter { tokens: 2 }),
                p(0.04, Fault::StallAfter { tokens: 3 }),
                p(
                    0.04,
                    Fault::ErrorEventAt {
                        n: 3,
                        kind: StreamErrorKind::Overloaded,
                    },
                ),
                p(0.03, Fault::MalformedEventAt { n: 2 }),
                p(0.03, Fault::NoTerminator),
                p(0.05, Fault::RateLimit { retry_after: 0.3 }),
                p(0.03, Fault::Overloaded { retry_after: None }),
                p(0.02, Fault::Reset),
            ];
            s.anthropic.random = vec![
                p(
                    0.04,
                    Fault::Overloaded {
                        retry_after: Some(0.2),
                    },
                ),
                p(0.03, Fault::ErrorFirstFrame),
                p(0.02, Fault::SlowFirstToken { ms: 1_500 }),
                p(0.02, Fault::CutAfter { tokens: 1 }),
            ];
        }
        _ => return None,
    }
    Some(s)
}
