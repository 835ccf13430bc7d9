//! What a layer needs of an LLM call, whatever the operation: the seam
//! that lets every staunch layer serve chat completions, embeddings and
//! any operation added later, as tower's layers serve any `Request`.
//!
//! A layer is generic over a [`Call`] (the request) and reads its
//! [`Answer`] (the response): the model to ask and how to ask another one
//! (fallback), a token estimate (budgets, quotas), whether it streams (the
//! commit point), its extensions (the deadline, a probe's mark, a budget's
//! allowance) and its clock (latency). A new operation is a new type that
//! implements both traits, not a new copy of each layer.
//!
//! ```
//! use staunch_core::{Answer, Call, ChatRequest, ChatResponse, Message, Operation};
//!
//! fn describe<C: Call>(call: &C) -> String {
//!     format!("{} {} (~{} tokens)", call.operation(), call.model(), call.estimated_input_tokens())
//! }
//!
//! let request = ChatRequest::new("gpt-4o", vec![Message::user("Hello there")]);
//! assert_eq!(describe(&request), "chat gpt-4o (~7 tokens)");
//! let answer = ChatResponse::new("gpt-4o", "Hi!");
//! assert_eq!(Answer::answered_model(&answer), "gpt-4o");
//! ```

use crate::{
    Allowance, ChatRequest, ChatResponse, EmbeddingInput, EmbeddingRequest, EmbeddingResponse,
    Extensions, ResponseMeta, Usage,
};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// The operation a call performs, named as OpenTelemetry's GenAI semantic
/// conventions name it (`gen_ai.operation.name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A chat completion (`"chat"`).
    Chat,
    /// Embeddings of a batch of inputs (`"embeddings"`).
    Embeddings,
}

impl Operation {
    /// The name: `"chat"` or `"embeddings"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Embeddings => "embeddings",
        }
    }

    /// How long one attempt of this operation may take by default: 30 s for
    /// a completion, 10 s for embeddings (which answer in well under a
    /// second when the provider is healthy).
    pub const fn default_attempt_timeout(self) -> Duration {
        match self {
            Operation::Chat => Duration::from_secs(30),
            Operation::Embeddings => Duration::from_secs(10),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An LLM call, as the layers see it. Cloning must be cheap: retry and
/// fallback clone the call for every attempt.
pub trait Call: Clone + Send + Sync + 'static {
    /// The answer a provider gives to this call.
    type Answer: Answer;

    /// What every call of this type does.
    const OPERATION: Operation;

    /// What the call does ([`OPERATION`](Self::OPERATION)).
    fn operation(&self) -> Operation {
        Self::OPERATION
    }

    /// The model asked.
    fn model(&self) -> &str;

    /// A clone that asks `model` instead: what a fallback target with a
    /// model of its own sends.
    fn clone_for_model(&self, model: &str) -> Self;

    /// A cheap estimate of the input's size in tokens, for routing,
    /// budgets and quotas (not billing).
    fn estimated_input_tokens(&self) -> u64;

    /// The most output tokens the call may produce, when it says (a chat
    /// request's `max_tokens`); embeddings produce none.
    fn max_output_tokens(&self) -> Option<u64>;

    /// Whether the answer streams: its future resolves at the first content
    /// event, the commit point.
    fn is_stream(&self) -> bool;

    /// Per-request metadata the layers share (a deadline, a probe's mark),
    /// as `http::Request::extensions`.
    fn extensions(&self) -> &Extensions;

    /// The extensions, mutably.
    fn extensions_mut(&mut self) -> &mut Extensions;

    /// Starts the call's clock if nothing has yet, and returns its start;
    /// clones share it, so every attempt measures from the same start.
    fn start_clock(&mut self) -> Instant;

    /// When the call's clock started, if it has.
    fn started(&self) -> Option<Instant>;

    /// The tokens the call may still spend, as a budget above set them;
    /// `None` without a per-request cap. Kept in the
    /// [`extensions`](Self::extensions) unless the call type has a place of
    /// its own for it (staunch's call types do: setting it allocates
    /// nothing).
    fn allowance(&self) -> Option<Allowance> {
        self.extensions().get::<Allowance>().copied()
    }

    /// Sets the call's [`Allowance`], or clears it with `None`.
    fn set_allowance(&mut self, allowance: Option<Allowance>) {
        match allowance {
            Some(allowance) => {
                self.extensions_mut().insert(allowance);
            }
            None => {
                self.extensions_mut().remove::<Allowance>();
            }
        }
    }

    /// Splits a batch call into calls of at most `max_inputs` inputs and
    /// about `max_tokens` estimated tokens each, in order (an input larger
    /// than `max_tokens` goes alone); `None` when the call fits as it is or
    /// is not a batch (chat never is).
    fn split_batch(&self, max_inputs: usize, max_tokens: u64) -> Option<Vec<Self>> {
        let _ = (max_inputs, max_tokens);
        None
    }

    /// Joins the answers to the parts [`split_batch`](Self::split_batch)
    /// made, in their order, into the answer to the whole call.
    fn join_answers(parts: Vec<Self::Answer>) -> Option<Self::Answer> {
        let _ = parts;
        None
    }
}

/// A [`Call`] whose content is typed: staunch can read it (a chat
/// request's messages, tools and output format, an embeddings request's
/// inputs) and build new calls from it, not just forward its bytes.
///
/// The layers that read or rewrite a call's content require it: checking
/// answers against the request's tool and output schemas (`ValidateLayer`)
/// and splitting a batch into requests that fit (`SplitBatchLayer`).
/// [`ChatRequest`] and [`EmbeddingRequest`] are typed calls; a raw HTTP
/// call (`staunch::http_call::HttpCall`), whose content is an opaque body,
/// is not, so those layers refuse it when the stack is compiled instead of
/// passing every request through unchecked or unsplit at run time.
///
/// A call type of your own implements it when those layers can do their
/// work on it: its answers say what they are through
/// [`Answer::as_chat`], and a batch splits through
/// [`Call::split_batch`] and [`Call::join_answers`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a typed call: this layer reads the request's content",
    label = "a call whose content staunch cannot read",
    note = "validation and batch splitting need a typed request such as `ChatRequest` or `EmbeddingRequest`; over a raw `HttpCall` they would do nothing"
)]
pub trait TypedCall: Call {}

impl TypedCall for ChatRequest {}

impl TypedCall for EmbeddingRequest {}

/// The answer to a [`Call`], as the layers see it.
pub trait Answer: Send + 'static {
    /// What staunch did to get it: who answered, attempts, tier, latency.
    fn meta(&self) -> &ResponseMeta;

    /// The meta, mutably (through its methods: one writer per fact).
    fn meta_mut(&mut self) -> &mut ResponseMeta;

    /// Tokens billed for this answer.
    fn usage(&self) -> Usage;

    /// Sets the tokens billed for this answer (a cached or static answer
    /// served again bills none).
    fn set_usage(&mut self, usage: Usage);

    /// Tokens billed for this answer and every failed attempt before it.
    fn total_usage(&self) -> Usage {
        self.usage() + self.meta().failed_usage
    }

    /// Whether the answer is a stream still to be read (its usage is then
    /// known only at its end).
    fn is_streaming(&self) -> bool;

    /// The model that answered: the one its meta names, else the one the
    /// provider reported.
    fn answered_model(&self) -> &str;

    /// The answer as a chat completion, for what only chat has (a stream
    /// of events to watch or continue, a finish reason); `None` for other
    /// operations.
    fn as_chat(&self) -> Option<&ChatResponse> {
        None
    }

    /// The answer as a chat completion, mutably (see [`as_chat`](Self::as_chat)).
    fn as_chat_mut(&mut self) -> Option<&mut ChatResponse> {
        None
    }
}

impl Call for ChatRequest {
    type Answer = ChatResponse;

    const OPERATION: Operation = Operation::Chat;

    #[inline]
    fn model(&self) -> &str {
        &self.model
    }

    fn clone_for_model(&self, model: &str) -> Self {
        ChatRequest::clone_for_model(self, model)
    }

    fn estimated_input_tokens(&self) -> u64 {
        ChatRequest::estimated_input_tokens(self)
    }

    #[inline]
    fn max_output_tokens(&self) -> Option<u64> {
        self.max_tokens.map(u64::from)
    }

    #[inline]
    fn is_stream(&self) -> bool {
        self.stream
    }

    #[inline]
    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    #[inline]
    fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    #[inline]
    fn start_clock(&mut self) -> Instant {
        ChatRequest::start_clock(self)
    }

    #[inline]
    fn started(&self) -> Option<Instant> {
        ChatRequest::started(self)
    }

    #[inline]
    fn allowance(&self) -> Option<Allowance> {
        ChatRequest::allowance(self)
    }

    #[inline]
    fn set_allowance(&mut self, allowance: Option<Allowance>) {
        ChatRequest::set_allowance(self, allowance);
    }
}

impl Answer for ChatResponse {
    #[inline]
    fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }

    #[inline]
    fn usage(&self) -> Usage {
        self.usage
    }

    #[inline]
    fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
    }

    #[inline]
    fn total_usage(&self) -> Usage {
        ChatResponse::total_usage(self)
    }

    #[inline]
    fn is_streaming(&self) -> bool {
        ChatResponse::is_streaming(self)
    }

    #[inline]
    fn answered_model(&self) -> &str {
        ChatResponse::answered_model(self)
    }

    #[inline]
    fn as_chat(&self) -> Option<&ChatResponse> {
        Some(self)
    }

    #[inline]
    fn as_chat_mut(&mut self) -> Option<&mut ChatResponse> {
        Some(self)
    }
}

impl Call for EmbeddingRequest {
    type Answer = EmbeddingResponse;

    const OPERATION: Operation = Operation::Embeddings;

    #[inline]
    fn model(&self) -> &str {
        &self.model
    }

    fn clone_for_model(&self, model: &str) -> Self {
        EmbeddingRequest::clone_for_model(self, model)
    }

    fn estimated_input_tokens(&self) -> u64 {
        EmbeddingRequest::estimated_input_tokens(self)
    }

    /// Embeddings produce no output tokens: budgets and quotas reserve the
    /// input alone.
    #[inline]
    fn max_output_tokens(&self) -> Option<u64> {
        Some(0)
    }

    #[inline]
    fn is_stream(&self) -> bool {
        false
    }

    #[inline]
    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    #[inline]
    fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    #[inline]
    fn start_clock(&mut self) -> Instant {
        EmbeddingRequest::start_clock(self)
    }

    #[inline]
    fn started(&self) -> Option<Instant> {
        EmbeddingRequest::started(self)
    }

    #[inline]
    fn allowance(&self) -> Option<Allowance> {
        EmbeddingRequest::allowance(self)
    }

    #[inline]
    fn set_allowance(&mut self, allowance: Option<Allowance>) {
        EmbeddingRequest::set_allowance(self, allowance);
    }

    fn split_batch(&self, max_inputs: usize, max_tokens: u64) -> Option<Vec<Self>> {
        let max_inputs = max_inputs.max(1);
        let sizes: Vec<u64> = self.input.estimated_tokens().collect();
        if sizes.len() <= max_inputs && sizes.iter().sum::<u64>() <= max_tokens {
            return None;
        }
        // The boundaries of the parts: as many inputs as fit both limits.
        let mut bounds = Vec::new();
        let (mut start, mut tokens) = (0, 0u64);
        for (i, &size) in sizes.iter().enumerate() {
            let full = i - start >= max_inputs || tokens.saturating_add(size) > max_tokens;
            if i > start && full {
                bounds.push(start..i);
                start = i;
                tokens = 0;
            }
            tokens = tokens.saturating_add(size);
        }
        bounds.push(start..sizes.len());
        let part = |input: EmbeddingInput| {
            let mut part = self.clone();
            part.input = std::sync::Arc::new(input);
            part
        };
        match &*self.input {
            EmbeddingInput::Text(texts) => Some(
                bounds
                    .into_iter()
                    .map(|r| part(EmbeddingInput::Text(texts[r].to_vec())))
                    .collect(),
            ),
            EmbeddingInput::Tokens(arrays) => Some(
                bounds
                    .into_iter()
                    .map(|r| part(EmbeddingInput::Tokens(arrays[r].to_vec())))
                    .collect(),
            ),
        }
    }

    fn join_answers(parts: Vec<EmbeddingResponse>) -> Option<EmbeddingResponse> {
        let mut parts = parts.into_iter();
        let mut whole = parts.next()?;
        for part in parts {
            let part = part.into_parts();
            let offset = whole.data.len();
            whole.data.extend(part.data.into_iter().map(|mut e| {
                e.index += offset;
                e
            }));
            whole.usage += part.usage;
            whole.meta.absorb_part(&part.meta);
        }
        Some(whole)
    }
}

impl Answer for EmbeddingResponse {
    #[inline]
    fn meta(&self) -> &ResponseMeta {
        &self.meta
    }

    #[inline]
    fn meta_mut(&mut self) -> &mut ResponseMeta {
        &mut self.meta
    }

    #[inline]
    fn usage(&self) -> Usage {
        self.usage
    }

    #[inline]
    fn set_usage(&mut self, usage: Usage) {
        self.usage = usage;
    }

    #[inline]
    fn is_streaming(&self) -> bool {
        false
    }

    #[inline]
    fn answered_model(&self) -> &str {
        EmbeddingResponse::answered_model(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn a_chat_request_is_a_call_of_its_own_fields() {
        let mut request = ChatRequest::new("gpt-4o", vec![Message::user("Hello there")])
            .with_max_tokens(64)
            .with_stream(true);
        assert_eq!(request.operation(), Operation::Chat);
        assert_eq!(Call::model(&request), "gpt-4o");
        assert_eq!(request.max_output_tokens(), Some(64));
        assert!(request.is_stream());
        assert_eq!(
            Call::estimated_input_tokens(&request),
            request.estimated_input_tokens()
        );
        let other = Call::clone_for_model(&request, "claude-sonnet-4-5");
        assert_eq!(other.model, "claude-sonnet-4-5");
        assert_eq!(Call::started(&request), None);
        let start = Call::start_clock(&mut request);
        assert_eq!(Call::started(&request), Some(start));
        Call::extensions_mut(&mut request).insert(7u8);
        assert_eq!(Call::extensions(&request).get::<u8>(), Some(&7));
    }

    #[test]
    fn a_batch_splits_within_both_limits_and_joins_in_order() {
        let texts: Vec<String> = (0..7).map(|i| format!("input number {i}")).collect();
        let request = EmbeddingRequest::new("e", texts.clone());
        assert!(request.split_batch(7, 1_000).is_none(), "it fits");
        let parts = request.split_batch(3, 1_000).expect("split by count");
        let sizes: Vec<usize> = parts.iter().map(|p| p.input.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
        // Each input is about 4 tokens: 9 tokens hold two.
        let parts = request.split_batch(100, 9).expect("split by tokens");
        assert!(parts.iter().all(|p| p.input.len() <= 2));
        let rejoined: Vec<String> = parts
            .iter()
            .flat_map(|p| p.input.texts().unwrap_or_default().to_vec())
            .collect();
        assert_eq!(rejoined, texts, "every input once, in order");
        // An input over the token limit goes alone, not nowhere.
        let big = EmbeddingRequest::new("e", vec!["x".repeat(400), "y".into()]);
        let parts = big.split_batch(10, 20).expect("split");
        assert_eq!(parts.len(), 2);

        let answers = parts
            .iter()
            .map(|p| {
                let data = (0..p.input.len())
                    .map(|i| crate::Embedding::new(i, vec![i as f32]))
                    .collect();
                EmbeddingResponse::new("e", data).with_usage(Usage::new(5, 0))
            })
            .collect();
        let whole = EmbeddingRequest::join_answers(answers).expect("joined");
        let indices: Vec<usize> = whole.data.iter().map(|e| e.index).collect();
        assert_eq!(indices, [0, 1]);
        assert_eq!(whole.usage, Usage::new(10, 0));
        assert!(
            ChatRequest::new("m", vec![Message::user("hi")])
                .split_batch(1, 1)
                .is_none()
        );
    }

    #[test]
    fn operations_have_their_names_and_attempt_timeouts() {
        assert_eq!(Operation::Chat.to_string(), "chat");
        assert_eq!(Operation::Embeddings.as_str(), "embeddings");
        assert_eq!(
            Operation::Chat.default_attempt_timeout(),
            Duration::from_secs(30)
        );
        assert_eq!(
            Operation::Embeddings.default_attempt_timeout(),
            Duration::from_secs(10)
        );
    }
}
