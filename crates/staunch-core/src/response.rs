//! The provider-neutral chat response and the account of how it was made.

use crate::{Message, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why the model stopped writing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum FinishReason {
    /// A natural end or a stop sequence (`stop`, Anthropic's `end_turn`/`stop_sequence`).
    Stop,
    /// The token limit was reached (`length`, `max_tokens`).
    Length,
    /// The model asked for tool calls.
    ToolCalls,
    /// The provider's content policy stopped or refused the answer
    /// (`content_filter`, Anthropic's `refusal`).
    ContentFilter,
    /// Any other reason, as the provider spelled it.
    Other(String),
}

impl FinishReason {
    /// The neutral name (`stop`, `length`, `tool_calls`, `content_filter`) or the provider's own.
    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

impl From<String> for FinishReason {
    fn from(s: String) -> Self {
        match s.as_str() {
            "stop" | "end_turn" | "stop_sequence" => FinishReason::Stop,
            "length" | "max_tokens" => FinishReason::Length,
            "tool_calls" | "tool_use" | "function_call" => FinishReason::ToolCalls,
            "content_filter" | "refusal" => FinishReason::ContentFilter,
            _ => FinishReason::Other(s),
        }
    }
}

impl From<FinishReason> for String {
    fn from(r: FinishReason) -> String {
        match r {
            FinishReason::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Display for FinishReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How good an answer is, from the caller's point of view.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum QualityTier {
    /// The first choice of target answered.
    #[default]
    Full,
    /// A fallback target answered.
    Reduced,
    /// Every target failed; a cached answer to the same request was served.
    Cached,
    /// Every target failed and nothing was cached; a configured static answer was served.
    Static,
}

impl QualityTier {
    /// The lower-case name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            QualityTier::Full => "full",
            QualityTier::Reduced => "reduced",
            QualityTier::Cached => "cached",
            QualityTier::Static => "static",
        }
    }

    /// True for [`Cached`](Self::Cached) and [`Static`](Self::Static): no
    /// model answered this request.
    pub const fn is_degraded(&self) -> bool {
        matches!(self, QualityTier::Cached | QualityTier::Static)
    }
}

impl fmt::Display for QualityTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the resilience layers did to produce a response.
///
/// Provider clients fill `provider` and `model`; each layer adds what it
/// knows (the retry layer `attempts`, `retry_wait` and `failed_usage`, the
/// fallback layer `target`, `fallback_depth` and the tier, the degradation
/// layer the tier and `warning`).
///
/// Each of those facts has one writer, a method here: layers read the
/// fields, and change them only through
/// [`answered_by`](Self::answered_by), [`fill_model`](Self::fill_model),
/// [`record_latency`](Self::record_latency),
/// [`answered_at_deployment`](Self::answered_at_deployment),
/// [`absorb_failed_attempts`](Self::absorb_failed_attempts),
/// [`add_retry_wait`](Self::add_retry_wait),
/// [`add_fallback_depth`](Self::add_fallback_depth) and
/// [`mark_degraded`](Self::mark_degraded), so that each rule (how attempts
/// add up, when an answer is `Reduced`, what a degraded answer reports)
/// lives in one place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseMeta {
    /// The provider that answered (`openai`, `anthropic`, …).
    pub provider: Option<String>,
    /// The model that was asked at the target that answered (after any
    /// fallback rewrite). Shared with the target's configuration where it
    /// comes from there, so naming it copies no string.
    pub model: Option<Arc<str>>,
    /// The fallback target that answered (shared with the target's name).
    pub target: Option<Arc<str>>,
    /// The deployment of the target that answered, when a load balancer
    /// spread the target over several (an API key, a region, a pool), set
    /// through [`answered_at_deployment`](Self::answered_at_deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The host of the server that answered (the provider's base URL's),
    /// set by the provider client through
    /// [`answered_from`](Self::answered_from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_address: Option<String>,
    /// The port of the server that answered (443 for an `https://` URL
    /// without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_port: Option<u16>,
    /// Calls made to produce this answer, the answering one included.
    pub attempts: u32,
    /// How many targets were passed over before the one that answered.
    pub fallback_depth: u32,
    /// The quality of the answer.
    pub tier: QualityTier,
    /// Wall time from the request's start to the answer: written once, by
    /// what produced the answer (the provider client, a degraded answer),
    /// from [`ChatRequest::start_clock`](crate::ChatRequest::start_clock).
    /// Layers that span attempts (retry, fallback) start that clock, so it
    /// covers every attempt and wait.
    pub latency: Duration,
    /// Time spent waiting between attempts (backoff and `Retry-After`).
    pub retry_wait: Duration,
    /// Tokens billed by attempts that failed (on top of [`ChatResponseParts::usage`]).
    pub failed_usage: Usage,
    /// What the answer cost in US dollars, failed attempts included, when
    /// the answering target's price is known.
    pub cost: Option<f64>,
    /// Why the answer is not of full quality, for degraded tiers.
    pub warning: Option<String>,
    /// For a streamed answer that broke and was continued: the targets
    /// that continued it, in order (filled by
    /// [`ChatResponse::collect`](crate::ChatResponse::collect); a stream
    /// reader sees [`StreamEvent::Continued`](crate::StreamEvent::Continued)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continuations: Vec<String>,
    /// Whether this answer was shared by identical requests in flight at
    /// once (one upstream call answered them all), set through
    /// [`mark_shared`](Self::mark_shared).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
    /// The provider's rate-limit headers on this answer (OpenAI's
    /// `x-ratelimit-*`, Anthropic's `anthropic-ratelimit-*`, `retry-after`),
    /// for a quota layer to learn the real limits from. Not serialized.
    #[serde(skip)]
    pub rate_limit_headers: Option<http::HeaderMap>,
}

impl Default for ResponseMeta {
    fn default() -> Self {
        ResponseMeta {
            provider: None,
            model: None,
            target: None,
            deployment: None,
            server_address: None,
            server_port: None,
            attempts: 1,
            fallback_depth: 0,
            tier: QualityTier::Full,
            latency: Duration::ZERO,
            retry_wait: Duration::ZERO,
            failed_usage: Usage::default(),
            cost: None,
            warning: None,
            continuations: Vec::new(),
            shared: false,
            rate_limit_headers: None,
        }
    }
}

impl ResponseMeta {
    /// Records who answered: the provider and the model that was asked
    /// there. The provider client that made the call writes this.
    ///
    /// ```
    /// use staunch_core::ResponseMeta;
    /// let mut meta = ResponseMeta::default();
    /// meta.answered_by("openai", "gpt-4o");
    /// assert_eq!(meta.provider.as_deref(), Some("openai"));
    /// assert_eq!(meta.model.as_deref(), Some("gpt-4o"));
    /// ```
    pub fn answered_by(&mut self, provider: impl Into<String>, model: impl Into<Arc<str>>) {
        self.provider = Some(provider.into());
        self.model = Some(model.into());
    }

    /// Records the server that answered: its host and port. The provider
    /// client that made the call writes this.
    ///
    /// ```
    /// use staunch_core::ResponseMeta;
    /// let mut meta = ResponseMeta::default();
    /// meta.answered_from("api.openai.com", 443);
    /// assert_eq!((meta.server_address.as_deref(), meta.server_port), (Some("api.openai.com"), Some(443)));
    /// ```
    pub fn answered_from(&mut self, address: impl Into<String>, port: u16) {
        self.server_address = Some(address.into());
        self.server_port = Some(port);
    }

    /// Names the model that was asked, when nothing inside (a provider
    /// client) named it already: `model` is only called then.
    ///
    /// ```
    /// use staunch_core::ResponseMeta;
    /// let mut meta = ResponseMeta::default();
    /// meta.fill_model(|| "gpt-4o-mini".into());
    /// meta.fill_model(|| unreachable!("the model is already named"));
    /// assert_eq!(meta.model.as_deref(), Some("gpt-4o-mini"));
    /// ```
    pub fn fill_model(&mut self, model: impl FnOnce() -> Arc<str>) {
        self.model.get_or_insert_with(model);
    }

    /// Sets [`latency`](Self::latency) to the time since `started`, the
    /// request's clock ([`ChatRequest::start_clock`](crate::ChatRequest::start_clock)).
    /// Whatever produced the answer calls it once.
    ///
    /// ```
    /// use staunch_core::ResponseMeta;
    /// let started = tokio::time::Instant::now();
    /// let mut meta = ResponseMeta::default();
    /// meta.record_latency(started);
    /// assert!(meta.latency <= started.elapsed());
    /// ```
    pub fn record_latency(&mut self, started: tokio::time::Instant) {
        self.latency = started.elapsed();
    }

    /// Folds calls that failed before this answer into it: `attempts` more
    /// calls (saturating) and the tokens they were billed, `spent`, into
    /// [`failed_usage`](Self::failed_usage). The retry, validation and
    /// fallback layers call it with what they saw fail.
    ///
    /// ```
    /// use staunch_core::{ResponseMeta, Usage};
    /// let mut meta = ResponseMeta::default();
    /// meta.absorb_failed_attempts(2, Usage::new(100, 0));
    /// assert_eq!(meta.attempts, 3, "two failures and the answer");
    /// assert_eq!(meta.failed_usage, Usage::new(100, 0));
    /// ```
    pub fn absorb_failed_attempts(&mut self, attempts: u32, spent: Usage) {
        self.attempts = self.attempts.saturating_add(attempts);
        self.failed_usage += spent;
    }

    /// Folds in the meta of another part of the same answer (one request
    /// of a batch split to fit a provider's limits): its attempts, failed
    /// spend and waits add up, its fallback depth counts when deeper, and
    /// the latency is the longest.
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch_core::{ResponseMeta, Usage};
    /// let mut first = ResponseMeta::default();
    /// let mut second = ResponseMeta::default();
    /// second.absorb_failed_attempts(1, Usage::new(10, 0));
    /// second.latency = Duration::from_millis(30);
    /// first.absorb_part(&second);
    /// assert_eq!(first.attempts, 3, "one call, then a retry and a call");
    /// assert_eq!(first.failed_usage, Usage::new(10, 0));
    /// assert_eq!(first.latency, Duration::from_millis(30));
    /// ```
    pub fn absorb_part(&mut self, part: &ResponseMeta) {
        self.attempts = self.attempts.saturating_add(part.attempts);
        self.failed_usage += part.failed_usage;
        self.retry_wait += part.retry_wait;
        self.latency = self.latency.max(part.latency);
        if part.fallback_depth > self.fallback_depth {
            self.add_fallback_depth(part.fallback_depth - self.fallback_depth);
        }
        self.cost = match (self.cost, part.cost) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    /// Records the deployment that answered, when a balancer chose among
    /// several deployments of one target. The innermost balancer names it
    /// (a balancer above another keeps the name it finds).
    ///
    /// ```
    /// use staunch_core::ResponseMeta;
    /// let mut meta = ResponseMeta::default();
    /// meta.answered_at_deployment("eastus");
    /// meta.answered_at_deployment("outer");
    /// assert_eq!(meta.deployment.as_deref(), Some("eastus"));
    /// ```
    pub fn answered_at_deployment(&mut self, deployment: &str) {
        if self.deployment.is_none() {
            self.deployment = Some(deployment.to_owned());
        }
    }

    /// Marks an answer that one upstream call gave to several identical
    /// requests in flight at once.
    ///
    /// ```
    /// use staunch_core::ResponseMeta;
    /// let mut meta = ResponseMeta::default();
    /// meta.mark_shared();
    /// assert!(meta.shared);
    /// ```
    pub fn mark_shared(&mut self) {
        self.shared = true;
    }

    /// Adds time spent waiting between attempts (backoff, `Retry-After`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use staunch_core::ResponseMeta;
    /// let mut meta = ResponseMeta::default();
    /// meta.add_retry_wait(Duration::from_millis(250));
    /// assert_eq!(meta.retry_wait, Duration::from_millis(250));
    /// ```
    pub fn add_retry_wait(&mut self, wait: Duration) {
        self.retry_wait += wait;
    }

    /// Counts `passed` more fallback targets passed over before the one
    /// that answered (saturating). An answer that some target was passed
    /// over for is [`Reduced`](QualityTier::Reduced), unless it is already
    /// of a lower tier.
    ///
    /// ```
    /// use staunch_core::{QualityTier, ResponseMeta};
    /// let mut meta = ResponseMeta::default();
    /// meta.add_fallback_depth(0);
    /// assert_eq!(meta.tier, QualityTier::Full, "the first target answered");
    /// meta.add_fallback_depth(1);
    /// assert_eq!((meta.fallback_depth, meta.tier), (1, QualityTier::Reduced));
    /// ```
    pub fn add_fallback_depth(&mut self, passed: u32) {
        self.fallback_depth = self.fallback_depth.saturating_add(passed);
        if self.fallback_depth > 0 && self.tier == QualityTier::Full {
            self.tier = QualityTier::Reduced;
        }
    }

    /// Marks the answer as a degraded one (`tier`, with `warning` saying
    /// why), served because the request failed with `failed`: its
    /// attempts and spend become the failed request's, and what belonged
    /// to the answer's own making (retry waits, fallback depth, cost) is
    /// cleared. A [`Static`](QualityTier::Static) answer was made by
    /// staunch itself: its provider is `staunch` and it has no target.
    ///
    /// The answer's own [`usage`](ChatResponseParts::usage) is the caller's to
    /// clear; [`latency`](Self::latency) is left for
    /// [`record_latency`](Self::record_latency).
    ///
    /// ```
    /// use staunch_core::{ErrorKind, LlmError, QualityTier, ResponseMeta, Usage};
    /// let failed = LlmError::new(ErrorKind::Overloaded, "busy")
    ///     .with_attempts(3)
    ///     .with_spent(Usage::new(40, 0));
    /// let mut meta = ResponseMeta::default();
    /// meta.mark_degraded(QualityTier::Static, &failed, "served the static answer");
    /// assert_eq!((meta.tier, meta.attempts), (QualityTier::Static, 3));
    /// assert_eq!(meta.failed_usage, Usage::new(40, 0));
    /// assert_eq!(meta.provider.as_deref(), Some("staunch"));
    /// assert_eq!(meta.warning.as_deref(), Some("served the static answer"));
    /// ```
    pub fn mark_degraded(
        &mut self,
        tier: QualityTier,
        failed: &crate::LlmError,
        warning: impl Into<String>,
    ) {
        self.tier = tier;
        self.attempts = failed.attempts;
        self.failed_usage = failed.total_spent();
        self.retry_wait = Duration::ZERO;
        self.fallback_depth = 0;
        self.cost = None;
        self.warning = Some(warning.into());
        if tier == QualityTier::Static {
            self.provider = Some("staunch".to_owned());
            self.target = None;
        }
    }
}

/// A chat completion.
///
/// Its fields are those of [`ChatResponseParts`], read and written
/// through `Deref` (`response.model`, `response.meta.attempts`); the answer
/// itself is one pointer to them. An answer moves up through every layer's
/// future, so a pointer keeps each of those moves to eight bytes instead
/// of a few hundred (and returns it in a register). Take the fields out by
/// value with [`into_parts`](ChatResponse::into_parts).
///
/// ```
/// use staunch_core::{ChatResponse, FinishReason, QualityTier, Usage};
/// let response = ChatResponse::new("gpt-4o", "Hello!").with_usage(Usage::new(9, 3));
/// assert_eq!(response.text(), "Hello!");
/// assert_eq!(response.finish_reason, FinishReason::Stop);
/// assert_eq!(response.meta.tier, QualityTier::Full);
/// assert_eq!(response.meta.attempts, 1);
/// assert_eq!(std::mem::size_of::<ChatResponse>(), 8);
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatResponse {
    parts: Box<ChatResponseParts>,
}

/// The fields of a [`ChatResponse`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponseParts {
    /// The provider's id for the completion.
    pub id: String,
    /// The model as the provider reported it.
    pub model: String,
    /// The assistant's message: its content and the tool calls it made.
    pub message: Message,
    /// The model's refusal, when it declined to answer (OpenAI's `refusal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens billed for this answer.
    pub usage: Usage,
    /// How the answer was produced.
    #[serde(default)]
    pub meta: ResponseMeta,
    /// For a streamed answer, its events after the commit point (the
    /// fields above then hold only what the head of the stream said).
    #[serde(skip)]
    pub stream: Option<crate::ResponseStream>,
}

impl std::ops::Deref for ChatResponse {
    type Target = ChatResponseParts;
    #[inline]
    fn deref(&self) -> &ChatResponseParts {
        &self.parts
    }
}

impl std::ops::DerefMut for ChatResponse {
    #[inline]
    fn deref_mut(&mut self) -> &mut ChatResponseParts {
        &mut self.parts
    }
}

impl fmt::Debug for ChatResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.parts, f)
    }
}

impl From<ChatResponseParts> for ChatResponse {
    fn from(parts: ChatResponseParts) -> Self {
        ChatResponse {
            parts: Box::new(parts),
        }
    }
}

impl ChatResponse {
    /// A complete (`stop`) assistant answer from `model` with `content`.
    pub fn new(model: impl Into<String>, content: impl Into<String>) -> Self {
        ChatResponse::from(ChatResponseParts {
            id: String::new(),
            model: model.into(),
            message: Message::assistant(content.into()),
            refusal: None,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            meta: ResponseMeta::default(),
            stream: None,
        })
    }

    /// The answer's fields, by value.
    ///
    /// ```
    /// use staunch_core::ChatResponse;
    /// let parts = ChatResponse::new("gpt-4o", "Hello!").into_parts();
    /// assert_eq!(parts.model, "gpt-4o");
    /// assert_eq!(parts.message.content.text(), "Hello!");
    /// ```
    pub fn into_parts(self) -> ChatResponseParts {
        *self.parts
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }

    /// Sets the finish reason.
    pub fn with_finish_reason(mut self, reason: FinishReason) -> Self {
        self.finish_reason = reason;
        self
    }

    /// Sets the metadata.
    pub fn with_meta(mut self, meta: ResponseMeta) -> Self {
        self.meta = meta;
        self
    }

    /// An answer from `model` that calls tools (finish reason `tool_calls`).
    pub fn tool_calls(model: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        let mut response = ChatResponse::new(model, String::new());
        response.message.tool_calls = calls;
        response.finish_reason = FinishReason::ToolCalls;
        response
    }

    /// The answer's text (its text parts, joined).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        self.message.content.text()
    }

    /// The tool calls the answer made.
    pub fn calls(&self) -> &[ToolCall] {
        &self.message.tool_calls
    }

    /// Tokens billed for this answer and every failed attempt before it.
    pub fn total_usage(&self) -> Usage {
        self.usage + self.meta.failed_usage
    }

    /// The model that answered: the one its meta names (the model asked at
    /// the target that answered), else the model the provider reported.
    ///
    /// ```
    /// use staunch_core::ChatResponse;
    /// let mut answer = ChatResponse::new("gpt-4o-2024-08-06", "Hello!");
    /// assert_eq!(answer.answered_model(), "gpt-4o-2024-08-06");
    /// answer.meta.answered_by("openai", "gpt-4o");
    /// assert_eq!(answer.answered_model(), "gpt-4o");
    /// ```
    pub fn answered_model(&self) -> &str {
        self.meta.model.as_deref().unwrap_or(&self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_of_both_providers_normalise() {
        for (wire, want) in [
            ("stop", FinishReason::Stop),
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("length", FinishReason::Length),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("content_filter", FinishReason::ContentFilter),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
        ] {
            let got: FinishReason = serde_json::from_value(serde_json::json!(wire)).unwrap();
            assert_eq!(got, want, "{wire}");
        }
        assert_eq!(
            serde_json::to_value(FinishReason::ToolCalls).unwrap(),
            "tool_calls"
        );
    }

    #[test]
    fn response_round_trips_with_meta() {
        let mut r = ChatResponse::new("m", "hi").with_usage(Usage::new(1, 2));
        r.meta.tier = QualityTier::Reduced;
        r.meta.failed_usage = Usage::new(5, 0);
        let back: ChatResponse = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.total_usage(), Usage::new(6, 2));
    }

    #[test]
    fn the_answered_model_is_the_meta_model_else_the_reported_one() {
        let mut r = ChatResponse::new("gpt-4o-2024-08-06", "hi");
        assert_eq!(r.answered_model(), "gpt-4o-2024-08-06");
        r.meta.fill_model(|| "gpt-4o".into());
        assert_eq!(r.answered_model(), "gpt-4o");
        r.meta.answered_by("openai", "gpt-4o-mini");
        assert_eq!(r.answered_model(), "gpt-4o-mini");
        assert_eq!(r.meta.provider.as_deref(), Some("openai"));
    }

    #[test]
    fn filling_the_model_keeps_one_already_named() {
        let mut meta = ResponseMeta::default();
        meta.answered_by("anthropic", "claude");
        meta.fill_model(|| panic!("not called when the model is named"));
        assert_eq!(meta.model.as_deref(), Some("claude"));
    }

    #[test]
    fn latency_is_the_time_since_the_start() {
        let started = tokio::time::Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let mut meta = ResponseMeta::default();
        meta.record_latency(started);
        assert!(meta.latency >= Duration::from_millis(20));
        assert!(meta.latency <= started.elapsed());
    }

    #[test]
    fn failed_attempts_add_their_count_and_spend() {
        let mut meta = ResponseMeta::default();
        meta.absorb_failed_attempts(0, Usage::default());
        assert_eq!((meta.attempts, meta.failed_usage), (1, Usage::default()));
        meta.absorb_failed_attempts(2, Usage::new(10, 1));
        meta.absorb_failed_attempts(1, Usage::new(5, 0));
        assert_eq!((meta.attempts, meta.failed_usage), (4, Usage::new(15, 1)));
        let r = ChatResponse::new("m", "hi")
            .with_usage(Usage::new(1, 1))
            .with_meta(meta);
        assert_eq!(r.total_usage(), Usage::new(16, 2));
    }

    #[test]
    fn failed_attempts_saturate() {
        let mut meta = ResponseMeta::default();
        meta.absorb_failed_attempts(u32::MAX, Usage::default());
        assert_eq!(meta.attempts, u32::MAX);
        meta.absorb_failed_attempts(7, Usage::new(1, 0));
        assert_eq!(meta.attempts, u32::MAX);
        assert_eq!(meta.failed_usage, Usage::new(1, 0));
    }

    #[test]
    fn retry_waits_add_up() {
        let mut meta = ResponseMeta::default();
        meta.add_retry_wait(Duration::from_millis(100));
        meta.add_retry_wait(Duration::from_secs(1));
        assert_eq!(meta.retry_wait, Duration::from_millis(1100));
    }

    #[test]
    fn passing_over_a_target_reduces_a_full_answer_only() {
        let mut meta = ResponseMeta::default();
        meta.add_fallback_depth(0);
        assert_eq!((meta.fallback_depth, meta.tier), (0, QualityTier::Full));
        meta.add_fallback_depth(2);
        assert_eq!((meta.fallback_depth, meta.tier), (2, QualityTier::Reduced));
        meta.add_fallback_depth(u32::MAX);
        assert_eq!(meta.fallback_depth, u32::MAX, "saturates");

        let failed = crate::LlmError::new(crate::ErrorKind::Server, "down");
        let mut cached = ResponseMeta::default();
        cached.mark_degraded(QualityTier::Cached, &failed, "cached");
        cached.add_fallback_depth(1);
        assert_eq!(cached.tier, QualityTier::Cached, "a lower tier stays");
    }

    #[test]
    fn a_degraded_answer_reports_the_failed_request() {
        let mut failed = crate::LlmError::new(crate::ErrorKind::Overloaded, "busy")
            .with_attempts(2)
            .with_spent(Usage::new(30, 0));
        failed.earlier.push(
            crate::LlmError::new(crate::ErrorKind::Server, "down").with_spent(Usage::new(5, 0)),
        );
        let mut meta = ResponseMeta::default();
        meta.answered_by("openai", "gpt-4o");
        meta.target = Some("primary".into());
        meta.absorb_failed_attempts(3, Usage::new(9, 9));
        meta.add_retry_wait(Duration::from_secs(2));
        meta.add_fallback_depth(1);
        meta.cost = Some(0.5);

        let mut cached = meta.clone();
        cached.mark_degraded(QualityTier::Cached, &failed, String::from("from the cache"));
        assert_eq!(cached.tier, QualityTier::Cached);
        assert_eq!(cached.attempts, 2);
        assert_eq!(
            cached.failed_usage,
            Usage::new(35, 0),
            "earlier targets' spend too"
        );
        assert_eq!(
            (cached.retry_wait, cached.fallback_depth, cached.cost),
            (Duration::ZERO, 0, None)
        );
        assert_eq!(cached.warning.as_deref(), Some("from the cache"));
        assert_eq!(
            (cached.provider.as_deref(), cached.target.as_deref()),
            (Some("openai"), Some("primary")),
            "a cached answer keeps who first gave it"
        );
        assert_eq!(cached.model.as_deref(), Some("gpt-4o"));

        let mut fixed = meta;
        fixed.mark_degraded(QualityTier::Static, &failed, "static");
        assert_eq!(fixed.tier, QualityTier::Static);
        assert_eq!(
            (fixed.provider.as_deref(), fixed.target.as_deref()),
            (Some("staunch"), None),
            "staunch made a static answer"
        );
    }

    #[test]
    fn tiers_order_by_quality() {
        assert!(
            QualityTier::Full < QualityTier::Reduced && QualityTier::Cached < QualityTier::Static
        );
        assert!(QualityTier::Cached.is_degraded() && !QualityTier::Reduced.is_degraded());
    }
}
