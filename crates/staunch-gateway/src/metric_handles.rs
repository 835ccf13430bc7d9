//! A metrics recorder that keeps the handles of the recorder it wraps.
//!
//! The `metrics` facade asks the recorder for a handle at every recording:
//! `metrics::histogram!(name, labels).record(x)` registers the key, then
//! records. The Prometheus recorder answers each registration by copying
//! the key (its labels on the heap) and looking it up in its registry; per
//! gateway request that is a dozen lookups, about a twentieth of the
//! request's instructions (`scripts/count-gateway.sh`). [`HandleCache`]
//! answers a key it has seen on this thread with the handle it got for it,
//! found by the hash every key carries.
//!
//! The wrapped recorder must keep a handle valid for as long as it lives,
//! as the Prometheus recorder does when no idle timeout is set (the
//! gateway sets none): a recorder that dropped idle metrics would have
//! them recorded into storage it no longer shows.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Keys a thread keeps handles for, per kind, before it starts over: the
/// gateway's label values are bounded (`staunch::observe::MAX_MODEL_LABELS`
/// and the like), so this is only a guard.
const MAX_KEYS: usize = 4096;

/// Wraps a recorder so that each thread registers a key with it once.
#[derive(Debug)]
pub struct HandleCache<R> {
    inner: R,
    /// Tells this cache's handles from another's on the same thread.
    id: usize,
}

impl<R> HandleCache<R> {
    /// Wraps `inner`, whose handles must stay valid while it lives.
    pub fn new(inner: R) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        HandleCache {
            inner,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Hashes a `Key` by the hash it carries (its `Hash` writes exactly that).
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for a `Key`; any other input still hashes.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Handles by the hash their key carries, each with its key.
struct ByKey<H> {
    by_hash: HashMap<u64, Vec<(Key, H)>, BuildHasherDefault<KeyHash>>,
    len: usize,
}

impl<H> Default for ByKey<H> {
    fn default() -> Self {
        ByKey {
            by_hash: HashMap::default(),
            len: 0,
        }
    }
}

impl<H: Clone> ByKey<H> {
    fn get(&self, key: &Key) -> Option<&H> {
        let entries = self.by_hash.get(&key.get_hash())?;
        // The same name and labels in the same order: the same key, found
        // without `Key`'s own comparison, which sorts labels to compare
        // them in any order (a tenth of a request's metrics work). Keys
        // from one call site always list their labels in one order.
        let same_order = |k: &Key| {
            same_text(k.name(), key.name())
                && k.labels().len() == key.labels().len()
                && k.labels()
                    .zip(key.labels())
                    .all(|(a, b)| same_text(a.key(), b.key()) && same_text(a.value(), b.value()))
        };
        entries
            .iter()
            .find(|(k, _)| same_order(k))
            .or_else(|| entries.iter().find(|(k, _)| k == key))
            .map(|(_, handle)| handle)
    }

    fn insert(&mut self, key: Key, handle: H) {
        if self.len >= MAX_KEYS {
            self.by_hash.clear();
            self.len = 0;
        }
        self.by_hash
            .entry(key.get_hash())
            .or_default()
            .push((key, handle));
        self.len += 1;
    }
}

/// `a == b`, answered without comparing bytes when both are the same text
/// in memory: a key's name and its label names come from one call site's
/// constants, and the copy kept here shares them.
fn same_text(a: &str, b: &str) -> bool {
    a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
}

#[derive(Default)]
struct Handles {
    counters: ByKey<Counter>,
    gauges: ByKey<Gauge>,
    histograms: ByKey<Histogram>,
}

thread_local! {
    static HANDLES: RefCell<Vec<(usize, Handles)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's handles of cache `id`; `None` while the
/// thread is being torn down (or a recorder called back in).
fn with_handles<T>(id: usize, f: impl FnOnce(&mut Handles) -> T) -> Option<T> {
    HANDLES
        .try_with(|all| {
            let mut all = all.try_borrow_mut().ok()?;
            let at = match all.iter().position(|(i, _)| *i == id) {
                Some(at) => at,
                None => {
                    all.push((id, Handles::default()));
                    all.len() - 1
                }
            };
            Some(f(&mut all[at].1))
        })
        .ok()
        .flatten()
}

/// The handle this thread keeps for `key` in the map `pick` chooses, or
/// the one `register` gives (then kept). The wrapped recorder is called
/// outside the thread's borrow of its handles.
fn cached<H: Clone>(
    id: usize,
    key: &Key,
    pick: fn(&mut Handles) -> &mut ByKey<H>,
    register: impl FnOnce() -> H,
) -> H {
    if let Some(handle) = with_handles(id, |h| pick(h).get(key).cloned()).flatten() {
        return handle;
    }
    let handle = register();
    with_handles(id, |h| pick(h).insert(key.clone(), handle.clone()));
    handle
}

impl<R: Recorder> Recorder for HandleCache<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        cached(
            self.id,
            key,
            |h| &mut h.counters,
            || self.inner.register_counter(key, metadata),
        )
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        cached(
            self.id,
            key,
            |h| &mut h.gauges,
            || self.inner.register_gauge(key, metadata),
        )
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        cached(
            self.id,
            key,
            |h| &mut h.histograms,
            || self.inner.register_histogram(key, metadata),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Level;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    /// Counts registrations, and hands out handles that add to one total
    /// per key name.
    #[derive(Default)]
    struct Counting {
        registrations: AtomicU64,
        totals: Mutex<HashMap<String, Arc<AtomicU64>>>,
    }

    struct Total(Arc<AtomicU64>);

    impl metrics::CounterFn for Total {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    impl metrics::HistogramFn for Total {
        fn record(&self, value: f64) {
            self.0.fetch_add(value as u64, Ordering::Relaxed);
        }
    }

    impl metrics::GaugeFn for Total {
        fn increment(&self, value: f64) {
            self.0.fetch_add(value as u64, Ordering::Relaxed);
        }
        fn decrement(&self, _: f64) {}
        fn set(&self, value: f64) {
            self.0.store(value as u64, Ordering::Relaxed);
        }
    }

    impl Counting {
        fn total(&self, key: &Key) -> Arc<AtomicU64> {
            self.registrations.fetch_add(1, Ordering::Relaxed);
            let mut name = key.name().to_owned();
            for label in key.labels() {
                name.push_str(&format!(",{}={}", label.key(), label.value()));
            }
            self.totals.lock().unwrap().entry(name).or_default().clone()
        }

        fn get(&self, name: &str) -> u64 {
            self.totals.lock().unwrap()[name].load(Ordering::Relaxed)
        }
    }

    impl Recorder for Counting {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Total(self.total(key))))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Total(self.total(key))))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Total(self.total(key))))
        }
    }

    fn metadata() -> Metadata<'static> {
        Metadata::new("test", Level::INFO, None)
    }

    #[test]
    fn a_key_is_registered_once_per_thread_and_every_recording_lands() {
        let inner = Arc::new(Counting::default());
        let cache = HandleCache::new(inner.clone());
        let a = Key::from_parts("requests", vec![metrics::Label::new("model", "a")]);
        let b = Key::from_parts("requests", vec![metrics::Label::new("model", "b")]);
        let (latency, in_flight) = (Key::from_name("latency"), Key::from_name("in_flight"));
        for _ in 0..100 {
            cache.register_counter(&a, &metadata()).increment(1);
            cache.register_counter(&b, &metadata()).increment(2);
            cache.register_histogram(&latency, &metadata()).record(3.0);
            cache.register_gauge(&in_flight, &metadata()).set(4.0);
        }
        // An equal key built anew finds the same handle.
        let a_again = Key::from_parts("requests", vec![metrics::Label::new("model", "a")]);
        cache.register_counter(&a_again, &metadata()).increment(1);
        assert_eq!(inner.get("requests,model=a"), 101);
        assert_eq!(inner.get("requests,model=b"), 200);
        assert_eq!(inner.get("latency"), 300);
        assert_eq!(inner.get("in_flight"), 4);
        // Each of the four keys: once.
        assert_eq!(inner.registrations.load(Ordering::Relaxed), 4);

        // Another thread registers for itself and records into the same totals.
        std::thread::scope(|s| {
            s.spawn(|| cache.register_counter(&a, &metadata()).increment(5));
        });
        assert_eq!(inner.registrations.load(Ordering::Relaxed), 5);
        assert_eq!(inner.get("requests,model=a"), 106);
    }

    #[test]
    fn texts_are_the_same_by_content_wherever_they_are() {
        let owned = String::from("model");
        let other = String::from("mode1");
        assert!(same_text("model", "model"));
        assert!(same_text(&owned, "model"));
        assert!(same_text("model", &owned));
        assert!(!same_text(&other, "model"));
        assert!(!same_text("model", "models"));
        // The same start in memory, not the same length.
        assert!(!same_text(&owned[..4], &owned));
        assert!(same_text("", &owned[5..]));
    }

    #[test]
    fn labels_in_another_order_are_the_same_key() {
        let inner = Arc::new(Counting::default());
        let cache = HandleCache::new(inner.clone());
        let labels = |order: [usize; 3]| {
            let all = [("a", "1"), ("b", "2"), ("c", "3")];
            let labels = order.map(|i| metrics::Label::new(all[i].0, all[i].1));
            Key::from_parts("requests", labels.to_vec())
        };
        cache
            .register_counter(&labels([0, 1, 2]), &metadata())
            .increment(1);
        cache
            .register_counter(&labels([2, 0, 1]), &metadata())
            .increment(1);
        assert_eq!(inner.registrations.load(Ordering::Relaxed), 1);
        assert_eq!(inner.get("requests,a=1,b=2,c=3"), 2);
        // A label value of another key is another key.
        let other = Key::from_parts("requests", vec![metrics::Label::new("a", "2")]);
        cache.register_counter(&other, &metadata()).increment(1);
        assert_eq!(inner.registrations.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn two_caches_on_one_thread_keep_their_own_handles() {
        let (one, two) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
        let (first, second) = (HandleCache::new(one.clone()), HandleCache::new(two.clone()));
        let key = Key::from_name("requests");
        first.register_counter(&key, &metadata()).increment(1);
        second.register_counter(&key, &metadata()).increment(2);
        first.register_counter(&key, &metadata()).increment(1);
        assert_eq!(one.get("requests"), 2);
        assert_eq!(two.get("requests"), 2);
    }

    #[test]
    fn past_the_bound_a_thread_starts_over_and_still_records() {
        let inner = Arc::new(Counting::default());
        let cache = HandleCache::new(inner.clone());
        let keys: Vec<Key> = (0..MAX_KEYS + 10)
            .map(|i| Key::from_parts("requests", vec![metrics::Label::new("n", i.to_string())]))
            .collect();
        for key in keys.iter().chain(&keys[..10]) {
            cache.register_counter(key, &metadata()).increment(1);
        }
        let kept = HANDLES.with(|all| {
            let all = all.borrow();
            let (_, handles) = all.iter().find(|(id, _)| *id == cache.id).unwrap();
            handles.counters.len
        });
        assert!(kept <= MAX_KEYS, "{kept} handles kept");
        assert_eq!(inner.get("requests,n=0"), 2);
        assert_eq!(inner.get(&format!("requests,n={}", MAX_KEYS + 9)), 1);
    }
}
