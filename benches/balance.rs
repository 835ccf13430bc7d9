//! What picking a deployment costs per request (issue 25): a whole call
//! through a `Balance` of 2 and of 16 deployments under each strategy,
//! against the same provider called directly, in one run; and the pick
//! alone. After the run it prints a table of medians and of each
//! variant's overhead over `raw`, read back from criterion's estimates of
//! this run.
//!
//! No tracing subscriber and no metrics recorder are installed.

mod support;

use criterion::Criterion;
use staunch::balance::{Balance, BalanceConfig, Deployment, Strategy};
use std::hint::black_box;
use support::{call_once, fresh_median, in_memory, request};

const GROUP: &str = "balance_pick";

const STRATEGIES: [Strategy; 4] = [
    Strategy::WeightedRandom,
    Strategy::LeastInFlight,
    Strategy::PowerOfTwoChoices,
    Strategy::Headroom,
];

fn balance(strategy: Strategy, n: usize) -> Balance {
    Balance::new(
        BalanceConfig::new("gpt-4o").strategy(strategy).seed(1),
        (0..n).map(|i| Deployment::new(format!("d{i}"), in_memory()).weight(1 + i as u32 % 3)),
    )
    .expect("valid")
}

fn ids() -> Vec<(String, String)> {
    let mut ids = vec![("raw".to_owned(), "provider called directly".to_owned())];
    for n in [2, 16] {
        for s in STRATEGIES {
            ids.push((
                format!("call_{}_{n}", s.as_str()),
                format!("a call through {n} deployments, {}", s.as_str()),
            ));
        }
    }
    for n in [2, 16] {
        for s in STRATEGIES {
            ids.push((
                format!("pick_{}_{n}", s.as_str()),
                format!("the pick alone, {n} deployments, {}", s.as_str()),
            ));
        }
    }
    ids
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group(GROUP);
    let req = request();
    let mut raw = in_memory();
    group.bench_function("raw", |b| {
        b.iter(|| black_box(call_once(&mut raw, black_box(&req))))
    });
    for n in [2, 16] {
        for s in STRATEGIES {
            let mut service = balance(s, n);
            group.bench_function(format!("call_{}_{n}", s.as_str()), |b| {
                b.iter(|| black_box(call_once(&mut service, black_box(&req))))
            });
        }
    }
    for n in [2, 16] {
        for s in STRATEGIES {
            let service = balance(s, n);
            group.bench_function(format!("pick_{}_{n}", s.as_str()), |b| {
                b.iter(|| black_box(service.pick_for(black_box(&req))))
            });
        }
    }
    group.finish();
}

fn print_table(started: std::time::SystemTime) {
    let Some(raw) = fresh_median(GROUP, "raw", started) else {
        return;
    };
    println!();
    println!("| variant | median | over raw |");
    println!("|---|---:|---:|");
    for (id, what) in ids() {
        let Some(m) = fresh_median(GROUP, &id, started) else {
            continue;
        };
        let over = if id.starts_with("call_") {
            format!("{:+.0} ns", m - raw)
        } else {
            "-".to_owned()
        };
        println!("| `{id}`: {what} | {m:.0} ns | {over} |");
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let started = std::time::SystemTime::now();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    print_table(started);
}
