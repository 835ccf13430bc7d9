//! The provider-neutral chat response and the account of how it was made.

use crate::{Message, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use std::fmt;
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseMeta {
    /// The provider that answered (`openai`, `anthropic`, …).
    pub provider: Option<String>,
    /// The model that was asked at the target that answered (after any
    /// fallback rewrite).
    pub model: Option<String>,
    /// The fallback target that answered.
    pub target: Option<String>,
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
    /// Tokens billed by attempts that failed (on top of [`ChatResponse::usage`]).
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
            attempts: 1,
            fallback_depth: 0,
            tier: QualityTier::Full,
            latency: Duration::ZERO,
            retry_wait: Duration::ZERO,
            failed_usage: Usage::default(),
            cost: None,
            warning: None,
            continuations: Vec::new(),
            rate_limit_headers: None,
        }
    }
}

/// A chat completion.
///
/// ```
/// use staunch_core::{ChatResponse, FinishReason, QualityTier, Usage};
/// let response = ChatResponse::new("gpt-4o", "Hello!").with_usage(Usage::new(9, 3));
/// assert_eq!(response.text(), "Hello!");
/// assert_eq!(response.finish_reason, FinishReason::Stop);
/// assert_eq!(response.meta.tier, QualityTier::Full);
/// assert_eq!(response.meta.attempts, 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatResponse {
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
    /// How the answer was produced. Boxed: a response moves through every
    /// layer's future, and the metadata is the larger half of it, so the
    /// box keeps each move small (one allocation per answer instead of a
    /// 300-byte copy per layer).
    #[serde(default)]
    pub meta: Box<ResponseMeta>,
    /// For a streamed answer, its events after the commit point (the
    /// fields above then hold only what the head of the stream said).
    #[serde(skip)]
    pub stream: Option<crate::ResponseStream>,
}

impl ChatResponse {
    /// A complete (`stop`) assistant answer from `model` with `content`.
    pub fn new(model: impl Into<String>, content: impl Into<String>) -> Self {
        ChatResponse {
            id: String::new(),
            model: model.into(),
            message: Message::assistant(content.into()),
            refusal: None,
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            meta: Box::default(),
            stream: None,
        }
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
        *self.meta = meta;
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
    fn tiers_order_by_quality() {
        assert!(
            QualityTier::Full < QualityTier::Reduced && QualityTier::Cached < QualityTier::Static
        );
        assert!(QualityTier::Cached.is_degraded() && !QualityTier::Reduced.is_degraded());
    }
}
