//! The degradation configuration.

use staunch_core::{ChatRequest, ChatResponse, Classify, DefaultClassify};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Marks a request that must not be degraded: its errors pass through
/// untouched and its answer is not cached. Use it for operations where a
/// stale or canned answer would be wrong (writes, payments, tool calls with
/// side effects).
///
/// ```
/// use staunch::core::{ChatRequest, Message};
/// use staunch::degrade::NoDegrade;
/// let request = ChatRequest::new("gpt-4o", vec![Message::user("Refund order 42")])
///     .with_extension(NoDegrade);
/// # let _ = request;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoDegrade;

type StaticFn = dyn Fn(&ChatRequest) -> ChatResponse + Send + Sync;

/// The answer of last resort.
#[derive(Clone)]
pub(super) enum StaticAnswer {
    /// A fixed text, answered as the requested model: a request in flight
    /// keeps only its model name for it.
    Text(Arc<str>),
    /// Built from the request: a request in flight keeps a clone of itself.
    Built(Arc<StaticFn>),
}

impl StaticAnswer {
    /// Whether building the answer needs the whole request.
    pub(super) fn needs_request(&self) -> bool {
        matches!(self, StaticAnswer::Built(_))
    }
}

/// How the [`DegradeLayer`](super::DegradeLayer) degrades.
///
/// | setting | default | meaning |
/// |---|---|---|
/// | `cache` (`cache_ttl`, `cache_capacity`) | off | keep successful answers to serve the same request again when it fails; `cache_ttl` alone means 10,000 answers, `cache_capacity` alone 10 min |
/// | `static_answer` | none | the answer of last resort, when nothing is cached |
/// | `classify` | [`DefaultClassify`] | `Fatal` errors are never degraded |
///
/// The cache is off by default, by choice. It is the largest cost of the
/// stack: every successful request pays one XXH3 pass over the whole
/// request (model, every message, the extras) and a moka insert of a clone
/// of the answer, and it holds up to `capacity` answers (10,000 answers of
/// 2 KB are about 20 MB) for `ttl`. It also pays off only where the same
/// request recurs (fixed prompts, pipelines that re-run), and it serves an
/// answer that may be up to `ttl` old. Turn it on where that is what you
/// want; see `benches/stack.rs` for its measured cost.
///
/// ```
/// use std::time::Duration;
/// use staunch::degrade::DegradeConfig;
///
/// let config = DegradeConfig::new()
///     .cache(Duration::from_secs(300), 1_000)
///     .static_answer("Our assistant is busy right now; please try again in a minute.");
/// # let _ = config;
/// ```
#[derive(Clone)]
pub struct DegradeConfig {
    pub(super) cache: Option<(Duration, u64)>,
    pub(super) static_answer: Option<StaticAnswer>,
    pub(super) classify: Arc<dyn Classify>,
}

impl Default for DegradeConfig {
    fn default() -> Self {
        DegradeConfig {
            cache: None,
            static_answer: None,
            classify: Arc::new(DefaultClassify),
        }
    }
}

impl DegradeConfig {
    /// The cache's capacity when only [`cache_ttl`](Self::cache_ttl) is
    /// set: 10,000 answers.
    pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
    /// The cache's time to live when only
    /// [`cache_capacity`](Self::cache_capacity) is set: 10 min.
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);

    /// The defaults of the table above.
    pub fn new() -> Self {
        Self::default()
    }

    /// Caches up to `capacity` successful answers for `ttl` each, to serve
    /// one again when the same request fails (least recently used go first).
    pub fn cache(mut self, ttl: Duration, capacity: u64) -> Self {
        self.cache = Some((ttl, capacity));
        self
    }

    /// Turns the cache on, keeping answers for `ttl`.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        let capacity = self.cache.map_or(Self::DEFAULT_CACHE_CAPACITY, |(_, c)| c);
        self.cache = Some((ttl, capacity));
        self
    }

    /// Turns the cache on, keeping at most `capacity` answers.
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        let ttl = self.cache.map_or(Self::DEFAULT_CACHE_TTL, |(t, _)| t);
        self.cache = Some((ttl, capacity));
        self
    }

    /// Caches nothing (the default): failures get the static answer or the
    /// error.
    pub fn no_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Answers `text` when every target failed and nothing is cached.
    pub fn static_answer(mut self, text: impl Into<String>) -> Self {
        self.static_answer = Some(StaticAnswer::Text(Arc::from(text.into())));
        self
    }

    /// Builds the answer of last resort from the request.
    pub fn static_answer_with<F>(mut self, answer: F) -> Self
    where
        F: Fn(&ChatRequest) -> ChatResponse + Send + Sync + 'static,
    {
        self.static_answer = Some(StaticAnswer::Built(Arc::new(answer)));
        self
    }

    /// Decides error classes with `classify` instead of the default table.
    pub fn classify(mut self, classify: impl Classify) -> Self {
        self.classify = Arc::new(classify);
        self
    }
}

impl fmt::Debug for DegradeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DegradeConfig")
            .field("cache", &self.cache)
            .field("static_answer", &self.static_answer.is_some())
            .finish_non_exhaustive()
    }
}
