//! Breakers and retries around an agent's own tools: any tower service with
//! its own error type, classified into the three classes.

use staunch::circuit_breaker::{
    BreakerError, CircuitBreakerConfig, CircuitBreakerLayer, CircuitState,
};
use staunch::core::ErrorClass;
use staunch::retry::{AnyRetryPolicy, NoJitter, RetryConfig};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

/// The errors of a web-search API.
#[derive(Clone, Debug, PartialEq)]
enum SearchError {
    /// 503: try again.
    Busy,
    /// The API key was revoked: no use retrying, count it against the API.
    Revoked,
    /// The query is malformed: the caller's fault.
    BadQuery,
}

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for SearchError {}

fn classify(e: &SearchError) -> ErrorClass {
    match e {
        SearchError::Busy => ErrorClass::Transient,
        SearchError::Revoked => ErrorClass::Unavailable,
        SearchError::BadQuery => ErrorClass::Fatal,
    }
}

/// A search API that plays a script of outcomes (`None` is an answer).
fn search(
    script: impl IntoIterator<Item = Option<SearchError>>,
) -> (
    impl tower::Service<String, Response = String, Error = SearchError, Future = impl Send> + Clone,
    Arc<Mutex<Vec<Instant>>>,
) {
    let script = Arc::new(Mutex::new(script.into_iter().collect::<VecDeque<_>>()));
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = calls.clone();
    let service = service_fn(move |query: String| {
        seen.lock().unwrap().push(Instant::now());
        let next = script.lock().unwrap().pop_front().flatten();
        async move {
            match next {
                Some(e) => Err(e),
                None => Ok(format!("results for {query}")),
            }
        }
    });
    (service, calls)
}

#[tokio::test(start_paused = true)]
async fn a_busy_tool_is_retried_with_backoff() {
    let (api, calls) = search([Some(SearchError::Busy), Some(SearchError::Busy), None]);
    let policy = AnyRetryPolicy::new(RetryConfig::new().jitter(NoJitter).no_budget(), classify);
    let tool = ServiceBuilder::new().layer(policy.layer()).service(api);
    let answer = tool.oneshot("rust".to_owned()).await.unwrap();
    assert_eq!(answer, "results for rust");
    let calls = calls.lock().unwrap();
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [Duration::from_millis(500), Duration::from_secs(1)]);
}

#[tokio::test(start_paused = true)]
async fn unavailable_and_fatal_tool_errors_are_not_retried() {
    for error in [SearchError::Revoked, SearchError::BadQuery] {
        let (api, calls) = search([Some(error.clone()), None]);
        let policy = AnyRetryPolicy::new(RetryConfig::new().no_budget(), classify);
        let tool = ServiceBuilder::new().layer(policy.layer()).service(api);
        assert_eq!(tool.oneshot("q".to_owned()).await.unwrap_err(), error);
        assert_eq!(calls.lock().unwrap().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_breaker_around_a_tool_opens_fails_fast_and_probes_it_back() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::new("web-search")
            .consecutive_failures(Some(3))
            .break_duration(Duration::from_secs(10))
            .break_jitter(0.0),
    )
    .unwrap();
    let handle = layer.handle();
    // The caller's bad query never counts; three revoked-key failures do.
    let (api, calls) = search([
        Some(SearchError::BadQuery),
        Some(SearchError::BadQuery),
        Some(SearchError::Revoked),
        Some(SearchError::Busy),
        Some(SearchError::Revoked),
        None,
    ]);
    let tool = layer.for_any(classify).layer(api);
    for want in [
        SearchError::BadQuery,
        SearchError::BadQuery,
        SearchError::Revoked,
        SearchError::Busy,
    ] {
        let err = tool.clone().oneshot("q".to_owned()).await.unwrap_err();
        assert_eq!(err.into_inner(), Some(want));
        assert_eq!(handle.state(), CircuitState::Closed);
    }
    let err = tool.clone().oneshot("q".to_owned()).await.unwrap_err();
    assert_eq!(err.into_inner(), Some(SearchError::Revoked));
    assert_eq!(handle.state(), CircuitState::Open);

    // Open: refused without a call, with the time left.
    let refused = tool.clone().oneshot("q".to_owned()).await.unwrap_err();
    assert!(refused.is_open());
    assert!(refused.to_string().contains("web-search"), "{refused}");
    match refused {
        BreakerError::Open { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(10)))
        }
        other => panic!("expected open, got {other:?}"),
    }
    assert_eq!(calls.lock().unwrap().len(), 5);

    // After the break, a probe that answers closes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        tool.clone().oneshot("q".to_owned()).await.unwrap(),
        "results for q"
    );
    assert_eq!(handle.state(), CircuitState::Closed);
    assert_eq!(handle.counts().failures, 3);
    assert_eq!(handle.counts().ignored, 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_gives_its_slot_back() {
    let layer = CircuitBreakerLayer::new(
        CircuitBreakerConfig::new("db")
            .consecutive_failures(Some(1))
            .break_duration(Duration::from_secs(1)),
    )
    .unwrap();
    let handle = layer.handle();
    let hung = service_fn(|n: u32| async move {
        if n == 0 {
            Err(SearchError::Busy)
        } else {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(n)
        }
    });
    let db = layer.for_any(classify).layer(hung);
    let _ = db.clone().oneshot(0).await;
    tokio::time::advance(Duration::from_secs(1)).await;
    // The probe hangs and its caller gives up.
    let probe = tokio::time::timeout(Duration::from_secs(1), db.clone().oneshot(1)).await;
    assert!(probe.is_err());
    assert_eq!(handle.state(), CircuitState::HalfOpen);
    assert!(handle.is_call_permitted(), "the slot came back");
    assert_eq!(handle.counts().ignored, 1);
}
