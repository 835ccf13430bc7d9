//! Per-thread pools of strong references to shared layer state.
//!
//! A layer's response future must own a reference to the state it reports
//! to when the call ends (the breaker it records the outcome in, the quota
//! it reconciles). Cloning and dropping an `Arc` per request writes its
//! count, one cache line every thread shares: on two cores that line moves
//! back and forth at each call. Here each thread keeps a few references
//! per state ready: taking one and giving it back touch only the thread's
//! own memory, and the shared count moves once per batch.
//!
//! A state its owner dropped lives on in the pools (a few hundred bytes)
//! until newer states push it out of each thread's list, or the thread
//! ends.

use std::cell::RefCell;
use std::sync::Arc;
use std::thread::LocalKey;

/// States a thread keeps references to, per type; the least recently used
/// is dropped first.
const MAX_POOLS: usize = 16;
/// References a pool holds at most, and takes at once when empty.
const POOL_MAX: usize = 64;
const REFILL: usize = 16;

struct Pool<T> {
    /// The state's address: unique while the pool holds a reference to it.
    key: usize,
    refs: Vec<Arc<T>>,
}

/// One thread's pools of references to states of type `T`: declare one
/// per type with `thread_local!` (`const { RefPools::new() }`). Typed, so
/// a reference comes out as it went in, without a downcast.
pub(crate) struct RefPools<T>(RefCell<Vec<Pool<T>>>);

impl<T> RefPools<T> {
    pub(crate) const fn new() -> Self {
        RefPools(RefCell::new(Vec::new()))
    }
}

fn key<T>(state: &Arc<T>) -> usize {
    Arc::as_ptr(state).cast::<()>() as usize
}

/// Runs `f` on the entry of `list` that `is` picks, made by `make` when
/// there is none (dropping the least recently used past `max`), after
/// moving it first: the per-thread lists here are short, and the entry
/// used last is the one most likely used next.
pub(crate) fn most_recent<E, R>(
    list: &mut Vec<E>,
    max: usize,
    is: impl Fn(&E) -> bool,
    make: impl FnOnce() -> E,
    f: impl FnOnce(&mut E) -> R,
) -> R {
    match list.iter().position(is) {
        Some(0) => {}
        Some(i) => list.swap(0, i),
        None => {
            if list.len() >= max {
                list.pop();
            }
            list.insert(0, make());
        }
    }
    f(&mut list[0])
}

/// Runs `f` on this thread's pool for `key`, made if there is none; `None`
/// while the thread is being torn down (or re-entered).
#[inline]
fn with_pool<T: 'static, R>(
    pools: &'static LocalKey<RefPools<T>>,
    key: usize,
    f: impl FnOnce(&mut Pool<T>) -> R,
) -> Option<R> {
    pools
        .try_with(|pools| {
            let mut pools = pools.0.try_borrow_mut().ok()?;
            // The state used last is almost always the one asked for.
            if let Some(first) = pools.first_mut()
                && first.key == key
            {
                return Some(f(first));
            }
            Some(f(find_pool(&mut pools, key)))
        })
        .ok()
        .flatten()
}

/// The pool for `key` in `pools`, moved first (made if there is none).
#[cold]
fn find_pool<T>(pools: &mut Vec<Pool<T>>, key: usize) -> &mut Pool<T> {
    most_recent(
        pools,
        MAX_POOLS,
        |p| p.key == key,
        || Pool {
            key,
            refs: Vec::new(),
        },
        |_| (),
    );
    &mut pools[0]
}

/// A strong reference to `state`, from this thread's pool of `pools`.
#[inline]
pub(crate) fn take<T: 'static>(pools: &'static LocalKey<RefPools<T>>, state: &Arc<T>) -> Arc<T> {
    with_pool(pools, key(state), |pool| match pool.refs.pop() {
        Some(one) => Some(one),
        None => {
            refill(pool, state);
            None
        }
    })
    .flatten()
    .unwrap_or_else(|| Arc::clone(state))
}

/// Fills an empty pool with a batch of references (one count update each,
/// once per batch of calls).
#[cold]
fn refill<T>(pool: &mut Pool<T>, state: &Arc<T>) {
    pool.refs
        .extend(std::iter::repeat_with(|| Arc::clone(state)).take(REFILL - 1));
}

/// Gives `state` back to this thread's pool of `pools` (or drops it when
/// the pool is full).
#[inline]
pub(crate) fn give<T: 'static>(pools: &'static LocalKey<RefPools<T>>, state: Arc<T>) {
    let key = key(&state);
    let mut spare = Some(state);
    with_pool(pools, key, |pool| {
        if pool.refs.len() < POOL_MAX
            && let Some(state) = spare.take()
        {
            pool.refs.push(state);
        }
    });
    drop(spare);
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static U32S: RefPools<u32> = const { RefPools::new() };
        static STRINGS: RefPools<String> = const { RefPools::new() };
        static U8S: RefPools<u8> = const { RefPools::new() };
    }

    #[test]
    fn references_come_back_to_the_pool_and_the_count_moves_per_batch() {
        let state = Arc::new(7u32);
        let first = take(&U32S, &state);
        // One for `state`, one handed out, the rest of the batch pooled.
        assert_eq!(Arc::strong_count(&state), 1 + REFILL);
        give(&U32S, first);
        for _ in 0..1_000 {
            let one = take(&U32S, &state);
            assert_eq!(*one, 7);
            give(&U32S, one);
        }
        assert_eq!(Arc::strong_count(&state), 1 + REFILL);
    }

    #[test]
    fn a_full_pool_drops_what_it_cannot_hold() {
        let state = Arc::new(String::from("s"));
        let held: Vec<_> = (0..POOL_MAX * 2).map(|_| take(&STRINGS, &state)).collect();
        for one in held {
            give(&STRINGS, one);
        }
        assert_eq!(Arc::strong_count(&state), 1 + POOL_MAX);
    }

    #[test]
    fn a_reference_given_back_on_another_thread_joins_that_threads_pool() {
        let state = Arc::new(1u8);
        let one = take(&U8S, &state);
        // A joined thread has run its thread-local destructors.
        std::thread::spawn(move || give(&U8S, one)).join().unwrap();
        // That thread's pool ended with it, dropping its reference.
        assert_eq!(Arc::strong_count(&state), REFILL);
    }
}
