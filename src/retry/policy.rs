//! The LLM retry decision: whether, and after how long, a failed attempt
//! is tried again.

use super::RetryConfig;
use super::attempt::AttemptNumber;
use crate::deadline::Deadline;
use crate::metrics as names;
use staunch_core::{Answer, Call, ErrorClass, LlmError, Usage};
use std::time::Duration;

/// Why the retry layer stopped retrying a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    NotRetryable,
    ServerSaidNo,
    MaxRetries,
    RetryAfterTooLong,
    Deadline,
    DeadlinePassed,
    Budget,
    RequestBudget,
    Probe,
}

impl GiveUp {
    /// The metric label.
    fn label(self) -> &'static str {
        match self {
            GiveUp::NotRetryable => "not_retryable",
            GiveUp::ServerSaidNo => "server_said_no",
            GiveUp::MaxRetries => "max_retries",
            GiveUp::RetryAfterTooLong => "retry_after_too_long",
            GiveUp::Deadline => "deadline",
            GiveUp::DeadlinePassed => "deadline_passed",
            GiveUp::Budget => "retry_budget",
            GiveUp::RequestBudget => "request_budget",
            GiveUp::Probe => "probe",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            GiveUp::NotRetryable => "not retryable",
            GiveUp::ServerSaidNo => "server sent x-should-retry: false",
            GiveUp::MaxRetries => "max retries reached",
            GiveUp::RetryAfterTooLong => "retry-after longer than max_retry_after",
            GiveUp::Deadline => "the wait would pass the deadline",
            GiveUp::DeadlinePassed => "the deadline cut the attempt",
            GiveUp::Budget => "retry budget spent",
            GiveUp::RequestBudget => "another attempt would exceed the request's token cap",
            GiveUp::Probe => "a half-open circuit's probe is one attempt",
        }
    }
}

/// One request's progress through the retry loop: what it has tried,
/// waited and spent. Starts at zero for every request.
#[derive(Default)]
pub(crate) struct Progress {
    retries: u32,
    failed_attempts: u32,
    waited: Duration,
    spent: Usage,
}

impl Progress {
    /// Whether and how long to wait before retrying `error`. `request` is
    /// the copy kept for the next attempt: `None` when no retry may follow
    /// (none configured, or the last one already made), so none was kept.
    fn decide<C: Call>(
        &self,
        config: &RetryConfig,
        request: Option<&C>,
        error: &LlmError,
    ) -> Result<Duration, GiveUp> {
        if error.is_deadline_exceeded() {
            return Err(GiveUp::DeadlinePassed);
        }
        let retryable = match error.should_retry {
            Some(false) => return Err(GiveUp::ServerSaidNo),
            // Only a server can say "retry"; the instruction rides on an HTTP answer.
            Some(true) if error.status.is_some() => true,
            _ => config.classify.classify(error) == ErrorClass::Transient,
        };
        if !retryable {
            return Err(GiveUp::NotRetryable);
        }
        let Some(request) = request else {
            return Err(GiveUp::MaxRetries);
        };
        if request.extensions().get::<crate::health::Probe>().is_some() {
            return Err(GiveUp::Probe);
        }
        if self.retries >= config.max_retries {
            return Err(GiveUp::MaxRetries);
        }
        let wait = match error.retry_after {
            Some(asked) if asked > config.max_retry_after => {
                return Err(GiveUp::RetryAfterTooLong);
            }
            Some(asked) => asked,
            None => config.jitter.jitter(config.backoff_bound(self.retries)),
        };
        if Deadline::of(request).is_some_and(|d| d.would_pass(wait)) {
            return Err(GiveUp::Deadline);
        }
        if request
            .allowance()
            .is_some_and(|a| !a.affords_another(self.spent.total()))
        {
            return Err(GiveUp::RequestBudget);
        }
        // Withdraw last: a request that gives up for another reason keeps
        // the budget for others.
        if let Some(budget) = &config.budget
            && !budget.withdraw()
        {
            return Err(GiveUp::Budget);
        }
        Ok(wait)
    }

    /// Takes an attempt's result: `Some(wait)` when the request is to be
    /// tried again after `wait` (the copy `request` then carries the next
    /// attempt's number), `None` when `result` is the answer, completed with
    /// what the earlier attempts cost.
    pub(crate) fn after<C: Call>(
        &mut self,
        config: &RetryConfig,
        request: Option<&mut C>,
        result: &mut Result<C::Answer, LlmError>,
    ) -> Option<Duration> {
        match result {
            Ok(response) => {
                if self.retries > 0 || self.failed_attempts > 0 {
                    if self.retries > 0 {
                        crate::metrics::counter!(names::RETRIED_REQUESTS, "outcome" => "ok")
                            .increment(1);
                    }
                    let meta = response.meta_mut();
                    meta.absorb_failed_attempts(self.failed_attempts, self.spent);
                    meta.add_retry_wait(self.waited);
                }
                None
            }
            Err(error) => {
                self.failed_attempts = self.failed_attempts.saturating_add(error.attempts.max(1));
                let spent_before = self.spent;
                self.spent += error.total_spent();
                match self.decide(config, request.as_deref(), error) {
                    Ok(wait) => {
                        self.retries += 1;
                        self.waited += wait;
                        if let Some(request) = request {
                            request
                                .extensions_mut()
                                .insert(AttemptNumber(self.retries + 1));
                        }
                        crate::metrics::counter!(
                            names::RETRIES,
                            "provider" => error.provider.clone().unwrap_or_else(|| "unknown".to_owned()),
                            "kind" => error.kind.as_str()
                        )
                        .increment(1);
                        tracing::debug!(
                            target: "staunch::retry",
                            kind = error.kind.as_str(),
                            status = error.status,
                            retry = self.retries,
                            wait_ms = wait.as_millis() as u64,
                            "retrying"
                        );
                        Some(wait)
                    }
                    Err(reason) => {
                        crate::metrics::counter!(names::RETRY_GIVEUPS, "reason" => reason.label())
                            .increment(1);
                        if self.retries > 0 {
                            crate::metrics::counter!(names::RETRIED_REQUESTS, "outcome" => "error")
                                .increment(1);
                        }
                        tracing::debug!(
                            target: "staunch::retry",
                            kind = error.kind.as_str(),
                            status = error.status,
                            attempts = self.failed_attempts,
                            reason = reason.as_str(),
                            "giving up"
                        );
                        error.set_attempts(self.failed_attempts);
                        // Fold the earlier attempts' tokens into this error so
                        // that its `total_spent` counts every token once.
                        error.spent += spent_before;
                        None
                    }
                }
            }
        }
    }

    /// Whether the configuration allows another retry after this one.
    pub(crate) fn may_retry_again(&self, config: &RetryConfig) -> bool {
        self.retries < config.max_retries
    }
}
