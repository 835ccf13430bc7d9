//! The cost of a shared quota decision on loopback, with and without
//! leasing: `cargo bench -p staunch-redis` (needs redis-server on the PATH).

use criterion::{Criterion, criterion_group, criterion_main};
use staunch_core::{ChatRequest, Message};
use staunch_redis::{Limit, RedisConnection, SharedQuota, SharedQuotaConfig};
use staunch_test::FakeProvider;
use staunch_test::redis::RedisServer;
use std::time::Duration;
use tower::ServiceExt;

fn bench(c: &mut Criterion) {
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("shared_quota");
    for (label, lease) in [("redis_per_request", 0), ("lease_100", 100)] {
        let quota = runtime.block_on(async {
            let redis = RedisConnection::connect(&server.url()).await.expect("url");
            SharedQuota::new(
                FakeProvider::new("fake").unrecorded(),
                SharedQuotaConfig::new(label, redis)
                    // Never the limit: measure the decision, not refusals.
                    .requests(Limit {
                        amount: u64::MAX / 4,
                        per: Duration::from_secs(60),
                    })
                    .lease(lease, 0)
                    .timeout(Duration::from_secs(1)),
            )
        });
        let request = ChatRequest::new("m", vec![Message::user("hi")]);
        group.bench_function(label, |b| {
            b.to_async(&runtime).iter(|| {
                let quota = quota.clone();
                let request = request.clone();
                async move { quota.oneshot(request).await.expect("admitted") }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
