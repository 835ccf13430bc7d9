//! Permits taken ahead, per thread: the admitted path's fast lane.
//!
//! A quota with roomy limits (each at least [`MIN_CAPACITY`] units) lets
//! each thread take a small batch of permits from its buckets in one
//! admission (a *lease*: `capacity / 64` units, at most [`MAX_REQUESTS`]
//! requests), then admits the next requests from that thread's stock
//! without touching a shared cache line or reading the clock. Tokens a
//! request reserved but was not billed go back to the stock of the thread
//! that reconciles it; tokens billed beyond the reservation are a debt of
//! that stock, paid from the next lease.
//!
//! Leased units were taken from the buckets when leased, so over time no
//! more is admitted than the limits allow. Over a short window a thread
//! may spend permits it took a little earlier: a burst can pass a limit by
//! at most one lease per thread (`threads × capacity / 64`, under 2 % per
//! thread), and a thread's stock may go ahead of requests already waiting
//! on another. Near the limit a lease no longer fits, and every request
//! takes the exact path (one admission, waiting in order).
//!
//! The future of a leased admission needs the quota's state when it ends
//! (to read the provider's rate-limit headers and 429s); it takes its
//! reference from the thread's pool (`ref_pool`), so that is no shared
//! write either.

use super::state::Shared;
use std::cell::RefCell;
use std::sync::Arc;

/// The least capacity of every limit for leasing to be on: a lease is
/// then at least 16 units. (A quota of fewer than 1,024 a minute admits
/// too little for the fast lane to matter, and stays exact.)
pub(crate) const MIN_CAPACITY: u64 = 1_024;
/// The most requests one lease takes.
pub(crate) const MAX_REQUESTS: u64 = 32;
/// The most tokens one lease takes (beyond what the request needs).
pub(crate) const MAX_TOKENS: u64 = 16_384;
/// Quotas a thread keeps a stock for; the least recently used is dropped
/// (its stock is simply not spent: the buckets lose it, never gain).
const MAX_STOCKS: usize = 16;

/// How much one lease takes, per resource (0: that resource is not
/// limited).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LeaseSize {
    pub(crate) requests: u64,
    pub(crate) tokens: u64,
}

struct Stock {
    id: u64,
    requests: u64,
    /// Negative: tokens billed beyond what was reserved, owed to the
    /// buckets.
    tokens: i64,
}

thread_local! {
    static STOCKS: RefCell<Vec<Stock>> = const { RefCell::new(Vec::new()) };
    static SHARED_REFS: crate::ref_pool::RefPools<Shared> =
        const { crate::ref_pool::RefPools::new() };
}

/// Runs `f` on this thread's stock of quota `id`, made (empty) if there is
/// none. `None` when the thread is being torn down.
fn with_stock<R>(id: u64, f: impl FnOnce(&mut Stock) -> R) -> Option<R> {
    STOCKS
        .try_with(|stocks| {
            let mut stocks = stocks.try_borrow_mut().ok()?;
            Some(crate::ref_pool::most_recent(
                &mut stocks,
                MAX_STOCKS,
                |s| s.id == id,
                || Stock {
                    id,
                    requests: 0,
                    tokens: 0,
                },
                f,
            ))
        })
        .ok()
        .flatten()
}

/// Gives `stock`'s unspent permits back to the buckets (and takes its
/// debt).
fn flush(shared: &Shared, stock: &mut Stock) {
    let requests = std::mem::take(&mut stock.requests);
    let tokens = std::mem::take(&mut stock.tokens);
    let (back, owed) = if tokens >= 0 {
        (tokens as u64, 0)
    } else {
        (0, tokens.unsigned_abs())
    };
    shared.give_back(requests, back);
    if owed > 0 {
        shared.charge_tokens(owed);
    }
}

/// This thread's unspent permits of `shared`: (requests, tokens).
pub(crate) fn held(shared: &Shared) -> (u64, u64) {
    STOCKS
        .try_with(|stocks| {
            let stocks = stocks.try_borrow().ok()?;
            let stock = stocks.iter().find(|s| s.id == shared.id())?;
            Some((stock.requests, stock.tokens.max(0) as u64))
        })
        .ok()
        .flatten()
        .unwrap_or((0, 0))
}

/// What a leased admission holds until its call ends.
pub(crate) struct Leased {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tokens: u64,
}

/// Admits one request reserving `tokens` from this thread's stock,
/// leasing more from `shared`'s buckets when the stock is short. `None`:
/// take the exact path (the lease did not fit now, or the thread is
/// being torn down).
pub(crate) fn admit(shared: &Arc<Shared>, size: LeaseSize, tokens: u64) -> Option<Leased> {
    with_stock(shared.id(), |stock| {
        let need_requests = size.requests > 0 && stock.requests == 0;
        let short_tokens = if size.tokens > 0 {
            i64::try_from(tokens)
                .ok()?
                .saturating_sub(stock.tokens)
                .max(0)
        } else {
            0
        };
        if need_requests || short_tokens > 0 {
            let requests = if need_requests { size.requests } else { 0 };
            let more = if short_tokens > 0 {
                (short_tokens as u64).saturating_add(size.tokens)
            } else {
                0
            };
            if !shared.try_lease(requests, more) {
                // Room is short: what this thread holds goes back, so the
                // exact path that follows sees all of it.
                flush(shared, stock);
                return None;
            }
            stock.requests += requests;
            stock.tokens = stock.tokens.saturating_add(i64::try_from(more).ok()?);
        }
        if size.requests > 0 {
            stock.requests -= 1;
        }
        if size.tokens > 0 {
            let reserved = i64::try_from(tokens).ok()?;
            stock.tokens = stock.tokens.saturating_sub(reserved);
        }
        Some(Leased {
            shared: crate::ref_pool::take(&SHARED_REFS, shared),
            tokens,
        })
    })
    .flatten()
}

impl Leased {
    /// Gives back what the call did not use: `billed` tokens of the
    /// reservation (`None`: the request was never called, so its request
    /// permit goes back too), and the reference, to the pool.
    pub(crate) fn settle(self, billed: Option<u64>) {
        let Leased { shared, tokens } = self;
        let size = shared.lease_size();
        with_stock(shared.id(), |stock| {
            let reserved = i64::try_from(tokens).unwrap_or(i64::MAX);
            match billed {
                None => {
                    if size.requests > 0 {
                        stock.requests += 1;
                    }
                    if size.tokens > 0 {
                        stock.tokens = stock.tokens.saturating_add(reserved);
                    }
                }
                Some(billed) if size.tokens > 0 => {
                    let billed = i64::try_from(billed).unwrap_or(i64::MAX);
                    stock.tokens = stock.tokens.saturating_add(reserved).saturating_sub(billed);
                }
                Some(_) => {}
            }
            // A debt beyond one lease is paid now rather than carried.
            let debt = if stock.tokens < 0 {
                stock.tokens.unsigned_abs()
            } else {
                0
            };
            if debt > size.tokens.max(1) {
                shared.charge_tokens(debt);
                stock.tokens = 0;
            }
        });
        crate::ref_pool::give(&SHARED_REFS, shared);
    }
}
