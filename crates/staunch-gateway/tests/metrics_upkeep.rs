//! The metrics recorder's memory stays bounded when nothing scrapes
//! `/metrics`: `metrics_upkeep` folds histogram samples into their
//! summaries. The heap is measured by a counting allocator, so this file
//! holds one test (its own process, no neighbour allocating meanwhile).

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use staunch_gateway::{METRICS_UPKEEP_EVERY, metrics_upkeep};
use staunch_test::alloc::CountingAllocator;

#[global_allocator]
static HEAP: CountingAllocator = CountingAllocator::new();

/// The bytes live on the heap now.
fn live() -> isize {
    HEAP.live() as isize
}

/// Records `n` request durations (1 ms to 1 s), as the stack does.
fn record(recorder: &PrometheusRecorder, n: u32) {
    metrics::with_local_recorder(recorder, || {
        let histogram = metrics::histogram!("staunch_request_duration_seconds", "outcome" => "ok");
        for i in 0..n {
            histogram.record(f64::from(i % 1000 + 1) * 1e-3);
        }
    });
}

/// Lets the upkeep task run what is due.
async fn settle() {
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn unscraped_histogram_samples_are_folded_away_and_still_counted() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let upkeep = tokio::spawn(metrics_upkeep(handle.clone()));
    settle().await;

    // Warm up: the summary exists and has seen the whole range of values.
    record(&recorder, 20_000);
    tokio::time::advance(METRICS_UPKEEP_EVERY).await;
    settle().await;
    record(&recorder, 20_000); // pins the epoch often enough to free
    tokio::time::advance(METRICS_UPKEEP_EVERY).await;
    settle().await;
    let base = live();

    // Nothing scrapes: until the next upkeep, the samples pile up.
    record(&recorder, 200_000);
    let piled = live() - base;
    assert!(
        piled > 1_000_000,
        "200,000 samples should hold over 1 MB before upkeep, held {piled} bytes"
    );

    // One upkeep later they are folded into the summary, and freed once
    // the recorder's epoch moves on (a few more records pin it).
    tokio::time::advance(METRICS_UPKEEP_EVERY).await;
    settle().await;
    record(&recorder, 5_000);
    let left = live() - base;
    assert!(
        left < piled / 10,
        "after upkeep {left} bytes were left of the {piled} the samples held"
    );

    // Nothing was lost: a scrape counts every sample.
    let text = handle.render();
    let count = text
        .lines()
        .find(|l| l.starts_with("staunch_request_duration_seconds_count"))
        .unwrap_or_else(|| panic!("no count line in:\n{text}"));
    assert!(count.ends_with(" 245000"), "{count}");
    upkeep.abort();
}
