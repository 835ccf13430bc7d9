use super::*;
use crate::stream_watch::replay;
use crate::test_support::{Scripted, Step, fail_after, request};
use staunch_core::{ChatRequest, ChatResponse, Deadline, ErrorClass, ErrorKind, LlmError, Usage};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

const SEC: Duration = Duration::from_secs(1);

/// `request()` is "hello": a prompt estimate of 6 tokens; with
/// `max_tokens(94)` it reserves exactly 100.
fn ask() -> ChatRequest {
    request().with_max_tokens(94)
}

fn named(model: &str) -> ChatRequest {
    let mut request = ask();
    request.model = model.to_owned();
    request
}

fn quota(config: QuotaConfig) -> QuotaLayer {
    QuotaLayer::new(config).unwrap()
}

/// A fake provider that answers every call, behind a quota of its own.
fn answering(config: QuotaConfig) -> (Scripted, Quota<Scripted>) {
    let fake = Scripted::scripted([Step::Answer]);
    (fake.clone(), quota(config).layer(fake))
}

/// The tokens an answer bills, carried in the request.
#[derive(Clone, Copy)]
struct Bill(Usage);

/// Sends one request (reserving 100 tokens) through `service`, billed
/// `usage`, and expects it answered.
async fn send_billed<S>(service: &S, usage: Usage)
where
    S: tower::Service<ChatRequest, Response = ChatResponse, Error = LlmError> + Clone,
{
    service
        .clone()
        .oneshot(ask().with_extension(Bill(usage)))
        .await
        .unwrap();
}

/// A provider that answers at once, billing the request's `Bill` (or
/// nothing), and records when it was called and what it billed.
#[derive(Clone, Default)]
struct Billing {
    calls: Arc<Mutex<Vec<(Instant, u64)>>>,
}

impl Billing {
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn service(&self) -> tower::util::BoxCloneSyncService<ChatRequest, ChatResponse, LlmError> {
        let calls = self.calls.clone();
        tower::util::BoxCloneSyncService::new(tower::service_fn(move |r: ChatRequest| {
            let usage = r.extensions.get::<Bill>().map_or(Usage::default(), |b| b.0);
            calls.lock().unwrap().push((Instant::now(), usage.total()));
            async move { Ok::<_, LlmError>(ChatResponse::new(&r.model, "ok").with_usage(usage)) }
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn the_requests_per_minute_admit_exactly_the_limit_per_window() {
    let (fake, service) = answering(
        QuotaConfig::new("a")
            .requests_per_minute(3)
            .max_wait(Duration::ZERO),
    );
    for _ in 0..2 {
        for _ in 0..3 {
            service.clone().oneshot(ask()).await.unwrap();
        }
        let err = service.clone().oneshot(ask()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(err.retry_after, Some(20 * SEC), "one request every 20 s");
        assert_eq!(err.should_retry, Some(false));
        assert_eq!(err.class(), ErrorClass::Unavailable, "the chain moves on");
        assert!(err.is_quota_refusal(), "not the provider's 429");
        assert!(
            err.message.contains("3 requests per minute"),
            "{}",
            err.message
        );
        // One slot comes back every 20 s; a whole minute brings all three.
        tokio::time::advance(20 * SEC).await;
        service.clone().oneshot(ask()).await.unwrap();
        assert!(service.clone().oneshot(ask()).await.is_err());
        tokio::time::advance(60 * SEC).await;
    }
    assert_eq!(fake.calls(), 8);
}

#[tokio::test(start_paused = true)]
async fn the_tokens_per_minute_admit_exactly_the_limit_per_window() {
    let billing = Billing::default();
    let layer = quota(
        QuotaConfig::new("a")
            .tokens_per_minute(300)
            .max_wait(Duration::ZERO),
    );
    let service = layer.layer(billing.service());
    // Each reserves 100 and is billed 100: three fit a minute.
    let billed = || ask().with_extension(Bill(Usage::new(60, 40)));
    for _ in 0..3 {
        service.clone().oneshot(billed()).await.unwrap();
    }
    assert_eq!(layer.handle().available_tokens(), Some(0));
    let err = service.clone().oneshot(billed()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(
        err.retry_after,
        Some(20 * SEC),
        "100 of 300 tokens per minute"
    );
    assert_eq!(billing.count(), 3);
    tokio::time::advance(60 * SEC).await;
    assert_eq!(layer.handle().available_tokens(), Some(300));
    for _ in 0..3 {
        service.clone().oneshot(billed()).await.unwrap();
    }
    assert!(service.oneshot(billed()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_wait_past_the_deadline_fails_at_once_without_calling_the_provider() {
    let (fake, service) = answering(
        QuotaConfig::new("a")
            .requests_per_minute(1)
            .max_wait(Duration::from_secs(600)),
    );
    service.clone().oneshot(ask()).await.unwrap();
    let started = Instant::now();
    let err = service
        .clone()
        .oneshot(ask().with_extension(Deadline::after(5 * SEC)))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(60 * SEC));
    assert!(err.message.contains("deadline"), "{}", err.message);
    assert_eq!(fake.calls(), 1);
    // A wait longer than max_wait fails the same way.
    let short = quota(
        QuotaConfig::new("b")
            .requests_per_minute(1)
            .max_wait(59 * SEC),
    )
    .layer(fake.clone());
    short.clone().oneshot(ask()).await.unwrap();
    let err = short.oneshot(ask()).await.unwrap_err();
    assert!(err.message.contains("max_wait"), "{}", err.message);
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_fits_the_deadline_waits_then_calls() {
    let (fake, service) = answering(
        QuotaConfig::new("a")
            .requests_per_minute(1)
            .max_wait(Duration::from_secs(600)),
    );
    let started = Instant::now();
    service.clone().oneshot(ask()).await.unwrap();
    service
        .clone()
        .oneshot(ask().with_extension(Deadline::after(90 * SEC)))
        .await
        .unwrap();
    let calls = fake.call_times();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1] - started, 60 * SEC);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_the_order_they_arrived() {
    let (fake, service) = answering(
        QuotaConfig::new("a")
            .requests_per_minute(2)
            .max_wait(Duration::from_secs(600)),
    );
    let started = Instant::now();
    service.clone().oneshot(named("first")).await.unwrap();
    service.clone().oneshot(named("second")).await.unwrap();
    let mut waiters = Vec::new();
    for i in 0..4 {
        waiters.push(tokio::spawn(
            service.clone().oneshot(named(&format!("w{i}"))),
        ));
        tokio::task::yield_now().await;
    }
    for w in waiters {
        w.await.unwrap().unwrap();
    }
    assert_eq!(
        fake.models(),
        ["first", "second", "w0", "w1", "w2", "w3"].map(String::from)
    );
    let offsets: Vec<_> = fake.call_times().iter().map(|t| *t - started).collect();
    assert_eq!(offsets, [0, 0, 30, 60, 90, 120].map(|s| s * SEC));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_returns_its_reservation() {
    let fake = Scripted::scripted([Step::Answer]);
    let layer = quota(
        QuotaConfig::new("a")
            .requests_per_minute(1)
            .tokens_per_minute(1_000)
            .max_wait(Duration::from_secs(600)),
    );
    let handle = layer.handle();
    let service = layer.layer(fake.clone());
    let started = Instant::now();
    let first = tokio::spawn(service.clone().oneshot(ask()));
    tokio::task::yield_now().await;
    first.await.unwrap().unwrap();
    // The answer billed 15 of the 100 reserved.
    assert_eq!(handle.available_tokens(), Some(985));
    let waiter = tokio::spawn(service.clone().oneshot(named("dropped")));
    tokio::task::yield_now().await;
    assert_eq!(handle.available_requests(), Some(0));
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(handle.available_tokens(), Some(985));
    // Its slot, a minute after the first, goes to the next request.
    service.clone().oneshot(named("next")).await.unwrap();
    assert_eq!(fake.models(), ["gpt-4o", "next"]);
    assert_eq!(fake.call_times()[1] - started, 60 * SEC);
}

#[tokio::test(start_paused = true)]
async fn reservations_are_reconciled_with_the_billed_tokens_both_ways() {
    let billing = Billing::default();
    let layer = quota(QuotaConfig::new("a").tokens_per_minute(1_000));
    let handle = layer.handle();
    let service = layer.layer(billing.service());
    // Billed less than the 100 reserved: the rest comes back.
    send_billed(&service, Usage::new(10, 20)).await;
    assert_eq!(handle.available_tokens(), Some(970));
    // Billed more: the extra is taken too.
    send_billed(&service, Usage::new(400, 200)).await;
    assert_eq!(handle.available_tokens(), Some(370));
    // An answer without usage leaves the reservation standing.
    service.clone().oneshot(ask()).await.unwrap();
    assert_eq!(handle.available_tokens(), Some(270));
    // A provider error bills what it says it spent (here nothing).
    let failing = layer.layer(Scripted::scripted([fail_after(
        ErrorKind::Server,
        500,
        SEC,
    )]));
    failing.oneshot(ask()).await.unwrap_err();
    assert_eq!(handle.available_tokens(), Some(270));
}

#[tokio::test(start_paused = true)]
async fn a_streamed_answer_is_reconciled_at_its_end() {
    let layer = quota(QuotaConfig::new("a").tokens_per_minute(1_000));
    let handle = layer.handle();
    let provider = tower::service_fn(|r: ChatRequest| async move {
        let mut answer =
            ChatResponse::new(&r.model, "a streamed answer").with_usage(Usage::new(40, 300));
        replay(&mut answer);
        Ok::<_, LlmError>(answer)
    });
    let answer = layer
        .layer(provider)
        .oneshot(ask().with_stream(true))
        .await
        .unwrap();
    assert!(answer.is_streaming());
    assert_eq!(
        handle.available_tokens(),
        Some(900),
        "reserved until the end"
    );
    let complete = answer.collect().await.unwrap();
    assert_eq!(complete.usage, Usage::new(40, 300));
    assert_eq!(handle.available_tokens(), Some(660));
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_a_whole_limit_is_refused_as_too_large() {
    let fake = Scripted::scripted([Step::Answer]);
    let service = quota(QuotaConfig::new("small").tokens_per_minute(99)).layer(fake.clone());
    let err = service.oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RequestTooLarge);
    assert!(err.is_quota_refusal());
    assert_eq!(err.retry_after, None);
    assert_eq!(err.class(), ErrorClass::Unavailable);
    assert!(err.message.contains("100 tokens"), "{}", err.message);
    assert_eq!(fake.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn openai_headers_pause_admissions_until_the_reset() {
    let fake = Scripted::scripted([Step::Answer]);
    // No configured limit: only what the provider said.
    let layer = quota(QuotaConfig::new("openai").max_wait(Duration::ZERO));
    let handle = layer.handle();
    let service = layer.layer(fake.clone());
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "1"),
        ("x-ratelimit-reset-requests", "2s"),
        ("x-ratelimit-remaining-tokens", "5000"),
        ("x-ratelimit-reset-tokens", "500ms"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    handle.observe(Observed::from_headers(&headers));
    assert_eq!(handle.available_requests(), Some(1));
    assert_eq!(handle.available_tokens(), Some(5_000));
    service.clone().oneshot(ask()).await.unwrap();
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(err.retry_after, Some(2 * SEC));
    assert!(err.message.contains("provider said"), "{}", err.message);
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(2 * SEC).await;
    assert_eq!(handle.available_requests(), None, "the observation lapsed");
    service.oneshot(ask()).await.unwrap();
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn anthropic_headers_make_a_request_wait_for_the_reset() {
    let billing = Billing::default();
    let layer = quota(QuotaConfig::new("anthropic").max_wait(30 * SEC));
    let handle = layer.handle();
    let service = layer.layer(billing.service());
    // Each reserves 100 and is billed 100.
    let billed = || ask().with_extension(Bill(Usage::new(60, 40)));
    let wall = UNIX_EPOCH + Duration::from_secs(1_735_732_800); // 2025-01-01T12:00:00Z
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("anthropic-ratelimit-tokens-limit", "80000"),
        ("anthropic-ratelimit-tokens-remaining", "150"),
        ("anthropic-ratelimit-tokens-reset", "2025-01-01T12:00:10Z"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let started = Instant::now();
    handle.observe(Observed::from_headers_at(&headers, started, wall));
    // 150 left: the first 100 fit, the next waits for the reset in 10 s.
    service.clone().oneshot(billed()).await.unwrap();
    assert_eq!(handle.available_tokens(), Some(50));
    service.clone().oneshot(billed()).await.unwrap();
    let offsets: Vec<_> = billing
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.0 - started)
        .collect();
    assert_eq!(offsets, [Duration::ZERO, 10 * SEC]);
    // A reservation larger than what is left, reconciled down, gives the
    // provider's count back as well.
    handle.observe(Observed::new().tokens(300, 10 * SEC));
    send_billed(&service, Usage::new(5, 5)).await;
    assert_eq!(handle.available_tokens(), Some(290));
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_admissions_for_that_long() {
    let fake = Scripted::scripted([
        fail_after(ErrorKind::RateLimited, 429, 7 * SEC),
        Step::Answer,
    ]);
    let layer = quota(
        QuotaConfig::new("a")
            .requests_per_minute(100)
            .max_wait(Duration::ZERO),
    );
    let handle = layer.handle();
    let service = layer.layer(fake.clone());
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(err.status, Some(429));
    assert_eq!(handle.paused_until(), Some(Instant::now() + 7 * SEC));
    let refused = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(refused.retry_after, Some(7 * SEC));
    assert!(
        refused.message.contains("Retry-After"),
        "{}",
        refused.message
    );
    assert_eq!(fake.calls(), 1, "refused without calling the provider");
    // The quota's own refusal (no HTTP status) does not pause anything.
    tokio::time::advance(7 * SEC).await;
    assert_eq!(handle.paused_until(), None);
    service.clone().oneshot(ask()).await.unwrap();
    assert_eq!(fake.calls(), 2);

    // A pause the provider asks for, waited out when it fits.
    let patient = quota(QuotaConfig::new("b").max_wait(10 * SEC));
    patient
        .handle()
        .observe(Observed::new().retry_after(3 * SEC));
    let started = Instant::now();
    patient.layer(fake.clone()).oneshot(ask()).await.unwrap();
    assert_eq!(fake.call_times()[2] - started, 3 * SEC);

    // Switched off, a 429 pauses nothing.
    let off = quota(QuotaConfig::new("c").pause_on_rate_limit(false));
    let fake = Scripted::scripted([fail_after(ErrorKind::RateLimited, 429, 7 * SEC)]);
    off.layer(fake).oneshot(ask()).await.unwrap_err();
    assert_eq!(off.handle().paused_until(), None);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_whose_provider_fails_readiness_gives_its_slot_back() {
    let layer = quota(
        QuotaConfig::new("a")
            .requests_per_minute(1)
            .max_wait(Duration::from_secs(600)),
    );
    let handle = layer.handle();
    let fake = Scripted::scripted([Step::Answer]);
    layer.layer(fake).oneshot(ask()).await.unwrap();
    assert_eq!(handle.available_requests(), Some(0));
    // A provider that is never ready again.
    let broken = tower::service_fn(|_: ChatRequest| async {
        Ok::<_, LlmError>(ChatResponse::new("m", "never"))
    });
    let timed_out = tokio::time::timeout(10 * SEC, layer.layer(broken).oneshot(ask())).await;
    assert!(timed_out.is_err(), "waiting for its slot at 60 s");
    tokio::time::advance(50 * SEC).await;
    assert_eq!(
        handle.available_requests(),
        Some(1),
        "the dropped waiter's slot came back"
    );
}

#[test]
fn a_zero_limit_is_a_clear_error() {
    let err = QuotaLayer::new(QuotaConfig::new("a").tokens_per_minute(0)).unwrap_err();
    assert_eq!(err, InvalidQuota::Zero("tokens per minute"));
    assert!(err.to_string().contains("tokens per minute"));
    // Setting a limit again replaces it.
    assert!(
        QuotaLayer::new(
            QuotaConfig::new("a")
                .tokens_per_minute(0)
                .tokens_per_minute(5)
        )
        .is_ok()
    );
}

mod property {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    struct Arrival {
        gap_ms: u64,
        max_tokens: u32,
        billed: u64,
    }

    fn arrival() -> impl Strategy<Value = Arrival> {
        (0u64..4_000, 1u32..=300, 0u64..=500).prop_map(|(gap_ms, max_tokens, billed)| Arrival {
            gap_ms,
            max_tokens,
            billed,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Through the whole layer (requests one after another, waiting
        /// when they must): in any window of admissions, the tokens billed
        /// never exceed the limit plus the window's refill plus one
        /// reservation, and the requests never exceed the request limit
        /// plus the window's refill.
        #[test]
        fn admitted_tokens_never_exceed_the_limit_in_any_window(
            arrivals in proptest::collection::vec(arrival(), 1..60)
        ) {
            const TOKENS: u64 = 1_000;
            const REQUESTS: u64 = 10;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let billing = Billing::default();
            let start = runtime.block_on(async {
                let start = Instant::now();
                let service = quota(
                    QuotaConfig::new("p")
                        .tokens_per_minute(TOKENS)
                        .requests_per_minute(REQUESTS)
                        .max_wait(Duration::from_secs(3_600)),
                )
                .layer(billing.service());
                for a in &arrivals {
                    tokio::time::advance(Duration::from_millis(a.gap_ms)).await;
                    let request = request()
                        .with_max_tokens(a.max_tokens)
                        .with_extension(Bill(Usage::new(0, a.billed)));
                    service.clone().oneshot(request).await.unwrap();
                }
                start
            });
            let calls = billing.calls.lock().unwrap().clone();
            prop_assert_eq!(calls.len(), arrivals.len());
            let reservation = arrivals.iter().map(|a| 6 + u64::from(a.max_tokens)).max().unwrap_or(0);
            let overshoot = arrivals
                .iter()
                .map(|a| a.billed.saturating_sub(6 + u64::from(a.max_tokens)))
                .max()
                .unwrap_or(0);
            for i in 0..calls.len() {
                let mut tokens = 0;
                for (j, call) in calls.iter().enumerate().skip(i) {
                    tokens += call.1;
                    let window = call.0 - calls[i].0;
                    let nanos = window.as_nanos() as u64;
                    let token_refill = nanos / (60_000_000_000 / TOKENS);
                    let request_refill = nanos / (60_000_000_000 / REQUESTS);
                    prop_assert!(
                        tokens <= TOKENS + token_refill + overshoot,
                        "{} tokens in {:?} from {:?} (reservation up to {})",
                        tokens, window, calls[i].0 - start, reservation
                    );
                    prop_assert!((j - i + 1) as u64 <= REQUESTS + request_refill);
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_quota_learns_from_the_headers_the_provider_sent_with_its_answer() {
    // The provider's answer says one request is left for 2 s.
    let provider = tower::service_fn(|r: ChatRequest| async move {
        let mut answer = ChatResponse::new(&r.model, "ok").with_usage(Usage::new(6, 4));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "2s".parse().unwrap());
        answer.meta.rate_limit_headers = Some(headers);
        Ok::<_, LlmError>(answer)
    });
    let layer = quota(QuotaConfig::new("openai").max_wait(Duration::ZERO));
    let service = layer.layer(provider);
    service.clone().oneshot(ask()).await.unwrap();
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::RateLimited,
        "paused before the provider would refuse"
    );
    assert_eq!(err.retry_after, Some(2 * SEC));
    tokio::time::advance(2 * SEC).await;
    service.oneshot(ask()).await.unwrap();
}

// The fast lane: roomy limits lease permits to each thread (see `lease`).

/// A quota of 6,400 requests a minute (a thread leases 32 at a time) that
/// never waits, over a fake provider.
fn roomy() -> (Scripted, QuotaHandle, Quota<Scripted>) {
    let fake = Scripted::scripted([Step::Answer]);
    let layer = quota(
        QuotaConfig::new("roomy")
            .requests_per_minute(6_400)
            .max_wait(Duration::ZERO),
    );
    (fake.clone(), layer.handle(), layer.layer(fake))
}

#[tokio::test(start_paused = true)]
async fn a_roomy_quota_leases_per_thread_and_still_admits_exactly_its_limit() {
    let (fake, handle, service) = roomy();
    service.clone().oneshot(ask()).await.unwrap();
    assert_eq!(
        handle.available_requests(),
        Some(6_399),
        "the lease counts as room here"
    );
    let mut admitted = 1;
    while service.clone().oneshot(ask()).await.is_ok() {
        admitted += 1;
    }
    assert_eq!(admitted, 6_400, "near the limit the exact path takes over");
    assert_eq!(fake.calls(), 6_400);
    // Ten seconds refill a sixth of the bucket, leased again.
    tokio::time::advance(10 * SEC).await;
    let mut more = 0;
    while service.clone().oneshot(ask()).await.is_ok() {
        more += 1;
    }
    assert_eq!(more, 1_066, "6,400 × 10 / 60, rounded down");
}

#[tokio::test(start_paused = true)]
async fn leased_tokens_are_reconciled_on_the_thread_and_paid_when_owed() {
    let billing = Billing::default();
    // 64,000 tokens a minute: a lease is 1,000 tokens beyond the request.
    let layer = quota(QuotaConfig::new("roomy").tokens_per_minute(64_000));
    let handle = layer.handle();
    let service = layer.layer(billing.service());
    // Reserved 100, billed 30: 70 come back to this thread's stock.
    send_billed(&service, Usage::new(10, 20)).await;
    assert_eq!(handle.available_tokens(), Some(64_000 - 30));
    // Billed 5,100 of 100 reserved: a debt beyond one lease, paid at once.
    send_billed(&service, Usage::new(100, 5_000)).await;
    assert_eq!(handle.available_tokens(), Some(64_000 - 30 - 5_100));
}

#[tokio::test(start_paused = true)]
async fn a_pause_stops_the_fast_lane_until_it_ends() {
    let (fake, handle, service) = roomy();
    service.clone().oneshot(ask()).await.unwrap();
    handle.pause_for(5 * SEC);
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::RateLimited,
        "the thread's stock waits too"
    );
    assert_eq!(fake.calls(), 1);
    tokio::time::advance(5 * SEC).await;
    service.clone().oneshot(ask()).await.unwrap();
    service.clone().oneshot(ask()).await.unwrap();
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_provider_saying_little_is_left_stops_the_fast_lane() {
    let (fake, handle, service) = roomy();
    service.clone().oneshot(ask()).await.unwrap();
    // Two requests left until a reset in 30 s: the third is refused even
    // though this thread holds 31 leased permits.
    handle.observe(Observed::new().requests(2, 30 * SEC));
    service.clone().oneshot(ask()).await.unwrap();
    service.clone().oneshot(ask()).await.unwrap();
    let err = service.clone().oneshot(ask()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::RateLimited);
    assert_eq!(fake.calls(), 3);
}

#[test]
fn two_threads_leasing_one_quota_never_admit_more_than_it_allows() {
    // Real threads and real time: 102,400 a minute, leases of 32.
    const LIMIT: u64 = 102_400;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (fake, service) = answering(
        QuotaConfig::new("roomy")
            .requests_per_minute(LIMIT)
            .max_wait(Duration::ZERO),
    );
    let started = std::time::Instant::now();
    let admitted: u64 = runtime.block_on(async {
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let service = service.clone();
                tokio::spawn(async move {
                    let mut admitted = 0u64;
                    while service.clone().oneshot(ask()).await.is_ok() {
                        admitted += 1;
                    }
                    admitted
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        total
    });
    let elapsed = started.elapsed();
    let refill = (elapsed.as_secs_f64() * LIMIT as f64 / 60.0).ceil() as u64;
    assert!(
        admitted <= LIMIT + refill,
        "{admitted} admitted, at most {LIMIT} + {refill} allowed"
    );
    assert!(
        admitted + 2 * 32 >= LIMIT,
        "{admitted} admitted: at most a lease per thread is left unspent"
    );
    assert_eq!(fake.calls() as u64, admitted);
}
