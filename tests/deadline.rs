//! A `Deadline` bounds the call that is already running, through the whole
//! recommended stack: hung attempts, slow answers, retry waits, a slow
//! primary before a healthy fallback, and the degrade layer's answer — and a
//! provider client given only a `Deadline` (its own timeout is 600 s).

mod support;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use staunch::ServiceBuilderExt;
use staunch::budget::{BudgetConfig, BudgetLayer};
use staunch::circuit_breaker::{CircuitBreakerConfig, CircuitBreakerLayer};
use staunch::core::{ChatRequest, ChatResponse, ErrorKind, LlmError, Message, QualityTier};
use staunch::degrade::DegradeConfig;
use staunch::fallback::{Fallback, Target};
use staunch::observe::InstrumentLayer;
use staunch::retry::{NoJitter, RetryConfig};
use staunch::{Deadline, DeadlineScope};
use staunch_test::{FakeProvider, Step, fail_after};
use std::time::Duration;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

type Stack = BoxCloneSyncService<ChatRequest, ChatResponse, LlmError>;

/// The README's per-target recipe, with tower's 60 s per-attempt timeout.
fn target(name: &'static str, provider: FakeProvider, breaker: CircuitBreakerConfig) -> Target {
    let breaker = CircuitBreakerLayer::new(breaker).expect("valid");
    let health = breaker.handle();
    let service = ServiceBuilder::new()
        .circuit_breaker(breaker)
        .llm_retry(RetryConfig::new().jitter(NoJitter).no_budget())
        .timeout(Duration::from_secs(60))
        .service(provider);
    Target::new(name, service).health(health)
}

/// The README stack over two providers, with or without a static answer.
fn stack(primary: &FakeProvider, backup: &FakeProvider, static_answer: bool) -> Stack {
    stack_with(primary, backup, static_answer, CircuitBreakerConfig::new)
}

fn stack_with(
    primary: &FakeProvider,
    backup: &FakeProvider,
    static_answer: bool,
    breaker: fn(&'static str) -> CircuitBreakerConfig,
) -> Stack {
    let chain = Fallback::new([
        target("primary", primary.clone(), breaker("primary")),
        target("backup", backup.clone(), breaker("backup")),
    ])
    .expect("two targets");
    let mut degrade = DegradeConfig::new().no_cache();
    if static_answer {
        degrade = degrade.static_answer("Please retry shortly.");
    }
    let service = ServiceBuilder::new()
        .layer(InstrumentLayer::new())
        .degrade(degrade)
        .budget(BudgetLayer::new(BudgetConfig::new().per_request_tokens(50_000)).expect("valid"))
        .service(chain);
    BoxCloneSyncService::new(service)
}

fn ask(deadline: Duration) -> ChatRequest {
    ChatRequest::new("gpt-4o", vec![Message::user("hello")])
        .with_max_tokens(32)
        .with_extension(Deadline::after(deadline))
}

#[tokio::test(start_paused = true)]
async fn a_hung_attempt_is_cut_at_the_deadline() {
    let (primary, backup) = (
        FakeProvider::new("primary").bill_prompt(20),
        FakeProvider::new("backup").bill_prompt(20),
    );
    primary.script([], Step::Hang);
    backup.script([], Step::Hang);
    let started = Instant::now();
    let err = stack(&primary, &backup, false)
        .oneshot(ask(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert_eq!(err.deadline_exceeded_scope(), Some(DeadlineScope::Request));
    assert!(err.to_string().contains("deadline"), "{err}");
    // The primary's share (1 s) was cut, then the backup's call by the
    // request's own deadline; neither waited for tower's 60 s timeout.
    assert_eq!((primary.calls(), backup.calls()), (1, 1));
    let first = &err.earlier[0];
    assert_eq!(
        first.deadline_exceeded_scope(),
        Some(DeadlineScope::TargetShare)
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_answer_inside_the_deadline_is_kept_and_one_past_it_is_cut() {
    let (primary, backup) = (
        FakeProvider::new("primary").bill_prompt(20),
        FakeProvider::new("backup").bill_prompt(20),
    );
    primary.script(
        [Step::Slow(Duration::from_millis(900))],
        Step::Slow(Duration::from_secs(30)),
    );
    let answer = stack(&primary, &backup, false)
        .oneshot(ask(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(answer.meta.tier, QualityTier::Full);
    assert_eq!(backup.calls(), 0);

    // 30 s is past the primary's 1 s share: the backup answers at 1 s.
    let started = Instant::now();
    let answer = stack(&primary, &backup, false)
        .oneshot(ask(Duration::from_secs(2)))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(answer.meta.target.as_deref(), Some("backup"));
    assert_eq!(answer.meta.tier, QualityTier::Reduced);
}

#[tokio::test(start_paused = true)]
async fn no_retry_wait_passes_the_deadline() {
    let (primary, backup) = (
        FakeProvider::new("primary").bill_prompt(20),
        FakeProvider::new("backup").bill_prompt(20),
    );
    // A 429 asking for 3 s, inside max_retry_after, but past a 2 s deadline.
    let limited = fail_after(ErrorKind::RateLimited, 429, Duration::from_secs(3));
    primary.script([], limited.clone());
    backup.script([], limited);
    let started = Instant::now();
    let err = stack(&primary, &backup, false)
        .oneshot(ask(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "nobody slept into the deadline"
    );
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!((primary.calls(), backup.calls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn the_fallback_after_a_slow_primary_is_called_in_time() {
    let (primary, backup) = (
        FakeProvider::new("primary").bill_prompt(20),
        FakeProvider::new("backup").bill_prompt(20),
    );
    primary.script([], Step::Slow(Duration::from_secs(20)));
    backup.script([], Step::Slow(Duration::from_millis(1_500)));
    let started = Instant::now();
    let answer = stack(&primary, &backup, true)
        .oneshot(ask(Duration::from_secs(5)))
        .await
        .unwrap();
    // 2.5 s for the primary, then 1.5 s of the backup's 2.5 s.
    assert_eq!(started.elapsed(), Duration::from_secs(4));
    assert_eq!(answer.meta.target.as_deref(), Some("backup"));
    assert_eq!(answer.meta.tier, QualityTier::Reduced);
}

#[tokio::test(start_paused = true)]
async fn degrade_answers_by_the_deadline_even_over_a_service_that_ignores_it() {
    // A bare inner service with no deadline handling of its own.
    let hung = tower::service_fn(|_: ChatRequest| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, LlmError>(ChatResponse::new("gpt-4o", "late"))
    });
    let service = ServiceBuilder::new()
        .degrade(DegradeConfig::new().static_answer("Please retry shortly."))
        .service(hung);
    let started = Instant::now();
    let answer = service.oneshot(ask(Duration::from_secs(2))).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(answer.meta.tier, QualityTier::Static);
    assert_eq!(answer.text(), "Please retry shortly.");
    let warning = answer.meta.warning.as_deref().unwrap_or_default();
    assert!(warning.contains("timeout"), "{warning}");
}

/// Issue 9's goal: hangs, slow answers and 429 + Retry-After mixed, 300
/// requests, 16 in flight, a 2 s deadline: none finishes past it + 50 ms,
/// and with a static answer configured every one is answered. Run with the
/// default breakers (a 429 with `Retry-After` opens a circuit for that long,
/// and a hang counts as a failure) and with breakers that keep calling, so
/// that most requests meet a hang, a slow answer or a rate limit.
#[tokio::test(start_paused = true)]
async fn three_hundred_mixed_requests_all_finish_by_their_deadline() {
    fn eager(name: &'static str) -> CircuitBreakerConfig {
        CircuitBreakerConfig::new(name)
            .break_duration(Duration::from_millis(200))
            .rate_limit_cooldown(false)
    }
    for (round, breaker) in [
        CircuitBreakerConfig::new as fn(&'static str) -> CircuitBreakerConfig,
        eager,
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = StdRng::seed_from_u64(9);
        let mut script = |n: usize| -> Vec<Step> {
            (0..n)
                .map(|_| match rng.random_range(0..10) {
                    0..=2 => Step::Hang,
                    3..=4 => Step::Slow(Duration::from_millis(rng.random_range(100..4_000))),
                    5..=6 => fail_after(
                        ErrorKind::RateLimited,
                        429,
                        Duration::from_millis(rng.random_range(100..1_500)),
                    ),
                    _ => Step::Answer,
                })
                .collect()
        };
        let (primary, backup) = (
            FakeProvider::new("primary").bill_prompt(20),
            FakeProvider::new("backup").bill_prompt(20),
        );
        primary.script(script(2_000), Step::Hang);
        backup.script(script(2_000), Step::Answer);
        let stack = stack_with(&primary, &backup, true, breaker);
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        // One arrival every 20 ms, at most 16 in flight.
        let mut arrivals = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..300 {
            arrivals.tick().await;
            let permit = limit.clone().acquire_owned().await.expect("open");
            let stack = stack.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let result = stack.oneshot(ask(Duration::from_secs(2))).await;
                drop(permit);
                (started.elapsed(), result)
            });
        }
        let (mut late, mut worst) = (0, Duration::ZERO);
        let mut tiers = std::collections::BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (took, result) = joined.expect("no panic");
            worst = worst.max(took);
            if took > Duration::from_millis(2_050) {
                late += 1;
            }
            let answer = result.expect("the static answer covers every failure");
            *tiers.entry(answer.meta.tier.to_string()).or_insert(0) += 1;
        }
        let calls = (primary.calls(), backup.calls());
        println!("round {round}: worst {worst:?}, tiers {tiers:?}, calls {calls:?}");
        assert_eq!(late, 0, "round {round}: past the deadline + 50 ms");
        assert!(
            tiers.len() >= 2,
            "round {round}: a mix of outcomes: {tiers:?}"
        );
        if round == 1 {
            assert!(
                calls.0 >= 100 && calls.1 >= 50,
                "the faults were met: {calls:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_given_only_a_deadline_is_bounded_by_it() {
    let server = support::wire::server(vec![staunch_mock::Fault::Hang], vec![]).await;
    // The client keeps its 600 s default request timeout.
    let client = support::wire::openai(&server);
    let call = client.oneshot(ask(Duration::from_millis(200)));
    let err = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the deadline, not the 600 s timeout, ended the call")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Timeout);
    assert!(err.is_deadline_exceeded(), "{err:?}");
    assert!(err.to_string().contains("deadline"), "{err}");
}
