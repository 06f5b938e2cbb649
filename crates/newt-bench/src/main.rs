//! `newt-bench`: newt's cost against the physical limit, the raw
//! vodozemac cost of the same cryptographic work measured in the same run.
//!
//! Usage: `cargo run --release -p newt-bench [-- --quick]`. Each figure is
//! the median of several runs; the ratio newt/limit is what counts, since
//! the machine is shared and noisy.

mod first_share;
mod fixtures;

use newt_crypto::store::MemoryStore;
use newt_sqlite::{SqliteStore, StoreKey};
use std::time::Duration;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row {
    workload: String,
    store: &'static str,
    threads: usize,
    newt: Duration,
    limit: Duration,
}

fn print(rows: &[Row]) {
    println!("| workload | store | threads | newt ms | limit ms (1 thread) | newt/limit |");
    println!("|---|---|---|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.2} |",
            r.workload,
            r.store,
            r.threads,
            ms(r.newt),
            ms(r.limit),
            r.newt.as_secs_f64() / r.limit.as_secs_f64().max(1e-9)
        );
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("thread pool: {e}"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--profile N`: run only first share at N on the memory store, for a
    // profiler.
    if let Some(n) = std::env::args()
        .skip_while(|a| a != "--profile")
        .nth(1)
        .and_then(|n| n.parse().ok())
    {
        let peers = fixtures::peers(n, n);
        let input = first_share::limit_input(&peers);
        if std::env::args().any(|a| a == "--sqlite") {
            for _ in 0..3 {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let mut store =
                    SqliteStore::open(&dir.path().join("b.db"), StoreKey::from_bytes([1; 32]))
                        .unwrap_or_else(|e| panic!("store: {e}"));
                let t = pool(1).install(|| first_share::newt(&mut store, &peers));
                println!("sqlite {:.1} ms", ms(t));
            }
            return;
        }
        println!("limit {:.1} ms", ms(first_share::limit(&input)));
        for _ in 0..3 {
            let t = pool(1).install(|| first_share::newt(&mut MemoryStore::new(), &peers));
            println!("{:.1} ms", ms(t));
        }
        return;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sizes: &[usize] = if quick { &[10, 100] } else { &[10, 100, 1000] };
    let reps = if quick { 3 } else { 5 };
    println!("newt-bench on {cores} cores; medians of {reps} runs\n");
    let mut rows = Vec::new();
    for &n in sizes {
        for (label, users) in [("users=devices", n), ("10 devices/user", (n / 10).max(1))] {
            let peers = fixtures::peers(users, n);
            let input = first_share::limit_input(&peers);
            let limit = median((0..reps).map(|_| first_share::limit(&input)).collect());
            for threads in [1, cores] {
                let workload = format!("first share N={n} ({label})");
                let memory = median(
                    (0..reps)
                        .map(|_| {
                            pool(threads)
                                .install(|| first_share::newt(&mut MemoryStore::new(), &peers))
                        })
                        .collect(),
                );
                rows.push(Row {
                    workload: workload.clone(),
                    store: "memory",
                    threads,
                    newt: memory,
                    limit,
                });
                let sqlite = median(
                    (0..reps)
                        .map(|_| {
                            let dir =
                                tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                            let mut store = SqliteStore::open(
                                &dir.path().join("b.db"),
                                StoreKey::from_bytes([1; 32]),
                            )
                            .unwrap_or_else(|e| panic!("store: {e}"));
                            pool(threads).install(|| first_share::newt(&mut store, &peers))
                        })
                        .collect(),
                );
                rows.push(Row {
                    workload,
                    store: "sqlite",
                    threads,
                    newt: sqlite,
                    limit,
                });
            }
        }
    }
    print(&rows);
}
