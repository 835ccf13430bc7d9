//! The pooled hyper client, spread over lanes so that requests to one
//! upstream are never queued behind an HTTP/2 connection's stream limit.
//!
//! hyper's pool keeps one HTTP/2 connection per upstream and sends every
//! request over it; once the server's `SETTINGS_MAX_CONCURRENT_STREAMS`
//! (100 at some providers, 200-256 at others) are all open, further
//! requests wait for one of them to end. A stream of an LLM answer lasts
//! seconds to minutes, so the 101st concurrent stream would wait that
//! long before its first byte. Each lane is a client with a pool of its
//! own, so a connection of its own; a request takes the first lane with
//! fewer than `per_lane` requests in flight, and a new lane opens when
//! every open one is full. Over HTTP/1.1, where each request holds a
//! connection anyway, lanes change nothing but which pool a connection
//! sits in.

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) type HyperClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The most lanes one upstream gets: past `MAX_LANES × per_lane` requests
/// in flight, requests share the least busy lane and hyper queues them.
pub(crate) const MAX_LANES: usize = 64;

/// The lanes to one upstream, shared by the clones of a client.
#[derive(Clone)]
pub(crate) struct Lanes {
    inner: Arc<Inner>,
}

struct Inner {
    connector: HttpsConnector<HttpConnector>,
    pool_idle_timeout: Duration,
    http2_only: bool,
    per_lane: usize,
    // Lanes built so far: `lanes[..open]` are set.
    open: AtomicUsize,
    // Boxed: a lane not yet open costs a pointer.
    lanes: [OnceLock<Box<Lane>>; MAX_LANES],
}

struct Lane {
    client: HyperClient,
    in_flight: AtomicUsize,
}

/// A request's place in a lane, given back when it is dropped: with the
/// response's body for a response, else with the request's future.
pub(crate) struct LaneSlot {
    inner: Arc<Inner>,
    index: usize,
}

impl Drop for LaneSlot {
    fn drop(&mut self) {
        if let Some(lane) = self.inner.lanes[self.index].get() {
            lane.in_flight.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Lanes {
    /// Lanes over `connector`, each holding up to `per_lane` requests
    /// (at least one) before the next opens.
    pub(crate) fn new(
        connector: HttpsConnector<HttpConnector>,
        pool_idle_timeout: Duration,
        http2_only: bool,
        per_lane: usize,
    ) -> Self {
        let inner = Inner {
            connector,
            pool_idle_timeout,
            http2_only,
            per_lane: per_lane.max(1),
            open: AtomicUsize::new(1),
            lanes: [const { OnceLock::new() }; MAX_LANES],
        };
        let _ = inner.lanes[0].set(Box::new(inner.lane()));
        Lanes {
            inner: Arc::new(inner),
        }
    }

    /// A client for one request, and the place it holds until dropped.
    pub(crate) fn take(&self) -> (&HyperClient, LaneSlot) {
        let inner = &*self.inner;
        loop {
            let open = inner.open.load(Ordering::Acquire);
            for (index, lane) in inner.lanes[..open].iter().enumerate() {
                let Some(lane) = lane.get() else { continue };
                if lane.in_flight.fetch_add(1, Ordering::AcqRel) < inner.per_lane {
                    return (&lane.client, self.slot(index));
                }
                lane.in_flight.fetch_sub(1, Ordering::Release);
            }
            if open == MAX_LANES {
                return self.least_busy();
            }
            // Every lane is full: open the next one (or, if another request
            // just did, try again with it).
            if inner
                .open
                .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let lane = inner.lanes[open].get_or_init(|| Box::new(inner.lane()));
                lane.in_flight.fetch_add(1, Ordering::AcqRel);
                return (&lane.client, self.slot(open));
            }
        }
    }

    /// With every lane open and full: the one with the fewest in flight.
    fn least_busy(&self) -> (&HyperClient, LaneSlot) {
        let inner = &*self.inner;
        let (index, lane) = inner
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, lane)| Some((i, &**lane.get()?)))
            .min_by_key(|(_, lane)| lane.in_flight.load(Ordering::Acquire))
            .unwrap_or_else(|| (0, inner.first()));
        lane.in_flight.fetch_add(1, Ordering::AcqRel);
        (&lane.client, self.slot(index))
    }

    fn slot(&self, index: usize) -> LaneSlot {
        LaneSlot {
            inner: self.inner.clone(),
            index,
        }
    }

    /// How many lanes are open.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.inner.open.load(Ordering::Acquire)
    }
}

impl Inner {
    fn lane(&self) -> Lane {
        Lane {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(self.pool_idle_timeout)
                .http2_only(self.http2_only)
                .build(self.connector.clone()),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The first lane, set when the lanes were built.
    fn first(&self) -> &Lane {
        self.lanes[0].get_or_init(|| Box::new(self.lane()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(per_lane: usize) -> Lanes {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .expect("the ring provider has safe defaults")
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(HttpConnector::new());
        Lanes::new(connector, Duration::from_secs(90), false, per_lane)
    }

    fn in_flight(lanes: &Lanes) -> Vec<usize> {
        lanes.inner.lanes[..lanes.open()]
            .iter()
            .map(|l| l.get().map_or(0, |l| l.in_flight.load(Ordering::Acquire)))
            .collect()
    }

    #[test]
    fn a_lane_opens_when_every_open_one_is_full_and_the_first_with_room_is_taken() {
        let lanes = lanes(2);
        let held: Vec<_> = (0..5).map(|_| lanes.take().1).collect();
        assert_eq!(lanes.open(), 3);
        assert_eq!(in_flight(&lanes), [2, 2, 1]);
        assert_eq!(
            held.iter().map(|s| s.index).collect::<Vec<_>>(),
            [0, 0, 1, 1, 2]
        );

        // A place given back is taken again before a later lane's.
        drop(held);
        assert_eq!(in_flight(&lanes), [0, 0, 0]);
        let (_, slot) = lanes.take();
        assert_eq!(slot.index, 0);
        assert_eq!(lanes.open(), 3, "lanes stay open for their pools");
    }

    #[test]
    fn past_the_last_lane_requests_share_the_least_busy_one() {
        let lanes = lanes(1);
        let mut held: Vec<_> = (0..MAX_LANES).map(|_| lanes.take().1).collect();
        assert_eq!(lanes.open(), MAX_LANES);
        held.remove(7);
        held.push(lanes.take().1);
        assert_eq!(held.last().map(|s| s.index), Some(7));
        held.push(lanes.take().1);
        assert_eq!(in_flight(&lanes).iter().sum::<usize>(), MAX_LANES + 1);
        assert_eq!(in_flight(&lanes).iter().max(), Some(&2));
    }

    #[test]
    fn a_limit_of_zero_is_taken_as_one() {
        let lanes = lanes(0);
        let _a = lanes.take().1;
        let _b = lanes.take().1;
        assert_eq!(in_flight(&lanes), [1, 1]);
    }
}
